"""``nutrilearn meals``: the meal log from a shell (export a user's history as CSV)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Sequence


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("meals", help="the meal log: list users, export meals as CSV")
    meals_sub = p.add_subparsers(dest="meals_command", required=True, metavar="ACTION")
    export = meals_sub.add_parser("export", help="write a user's meals to a CSV file")
    export.add_argument("--user", required=True,
                        help="user name: as picked in local mode, or sub:<subject> for a logged-in user "
                             "(`nutrilearn meals users` lists them)")
    export.add_argument("-o", "--output", required=True, type=Path, help="CSV file to write ('-' for stdout)")
    export.add_argument("--start", type=_date, help="first local date (YYYY-MM-DD), default: all")
    export.add_argument("--end", type=_date, help="last local date (YYYY-MM-DD), default: all")
    export.set_defaults(handler=run_export)
    users = meals_sub.add_parser("users", help="list the users in the meal log (name, then display name if any)")
    users.set_defaults(handler=run_users)


def run_export(args: argparse.Namespace) -> int:
    from nutrilearn.meals import MealStore, NotFoundError, StoreBusyError, meals_to_csv

    if args.start and args.end and args.start > args.end:
        print("error: --start is after --end", file=sys.stderr)
        return 2
    store = MealStore.from_settings()
    try:
        meals = store.meals(args.user, args.start, args.end)
    except (NotFoundError, StoreBusyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    data = meals_to_csv(meals)
    if str(args.output) == "-":
        sys.stdout.write(data.decode("utf-8"))
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(data)
        print(f"wrote {len(meals)} meal(s) of {args.user} to {args.output}")
    return 0


def run_users(_args: argparse.Namespace) -> int:
    from nutrilearn.meals import MealStore

    store = MealStore.from_settings()
    try:
        for name in store.list_users():
            user = store.get_user(name)
            shown = user.display_name if user is not None else None
            print(f"{name}\t{shown}" if shown else name)
    finally:
        store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meals`` on its own (``python -m nutrilearn.cli.meals export ...``)."""
    parser = argparse.ArgumentParser(prog="nutrilearn")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["meals", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
