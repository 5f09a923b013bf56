"""``nutrilearn monitor``: the Monitoring overview from a shell, answered from the mirror.

The mirror is brought up to date first (new batch runs only, with a progress bar once
there is something to copy), then a few DuckDB passes read only the window's days and the
columns each figure needs. Nothing on this path imports pandas (half a second to start).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="volumes, errors, confidence and latency for a time window",
                       description="Served predictions only (a challenger's shadow answers are left out "
                       "unless --include-shadow). Times are UTC; naive --since/--until are taken as UTC.")
    p.add_argument("--since", metavar="TIME", help="ISO time, inclusive (e.g. 2026-11-27 or 2026-11-27T10:00)")
    p.add_argument("--until", metavar="TIME", help="ISO time, exclusive")
    p.add_argument("--days", type=float, metavar="D", help="the last D days (instead of --since)")
    p.add_argument("--model-version", action="append", metavar="V", help="repeat for several")
    p.add_argument("--user", action="append", metavar="NAME", help="repeat for several")
    p.add_argument("--exclude-replayed", action="store_true", help="leave out replayed traffic")
    p.add_argument("--include-shadow", action="store_true", help="count a challenger's shadow answers too")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many foods to list (default 10)")
    p.add_argument("--no-sync", action="store_true", help="answer from the mirror as it is, without asking MLflow")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=run)


def _time(value: str | None, name: str):
    from datetime import datetime, timezone

    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.strip())
    except (ValueError, TypeError):
        raise SystemExit(f"error: --{name} {value!r} is not a time (try 2026-11-27T10:00)")
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def monitor_summary(history, filters, top: int) -> dict:
    """The overview as plain JSON types (what ``--json`` prints)."""
    return history.summary(filters, top)


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack
    from datetime import datetime, timedelta, timezone

    from nutrilearn.cli.progress import progress_bar
    from nutrilearn.config import Settings
    from nutrilearn.monitoring.history import History
    from nutrilearn.monitoring.filters import Filters
    from nutrilearn.tracking.mirror import Mirror

    start, end = _time(args.since, "since"), _time(args.until, "until")
    if args.days is not None:
        start = datetime.now(timezone.utc) - timedelta(days=args.days)
    settings = Settings.from_env()
    mirror = Mirror(settings)
    if not args.no_sync:
        with ExitStack() as stack:
            bar: list = []

            def update(done: int, total: int) -> None:  # the bar (and rich) only once there is work
                if not bar:
                    bar.append(stack.enter_context(progress_bar("mirroring batches", None)))
                bar[0](done, total)

            result = mirror.sync(progress=update)
        if result.error:
            print(f"warning: {result.error}; answering from the mirror as it is", file=sys.stderr)
        elif result.failed_runs:
            print(f"warning: {result.failed_runs} batch run(s) could not be copied now; "
                  "they are tried again next time", file=sys.stderr)
    filters = Filters(start=start, end=end, model_versions=tuple(args.model_version or ()),
                      users=tuple(args.user or ()), hide_replayed=args.exclude_replayed,
                      include_shadow=args.include_shadow)
    history = History(mirror, settings.spool_dir)
    try:
        summary = monitor_summary(history, filters, args.top)
    finally:
        history.close()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from nutrilearn.answers import percent
    from nutrilearn.vision.vocabulary import display_name

    lat = summary["latency_ms"]
    ms = lambda v: "-" if v is None else f"{v:.0f} ms"  # noqa: E731
    print(f"{summary['count']:,} predictions from {summary['first'] or '-'} to {summary['last'] or '-'} "
          f"by {summary['users']} user(s)")
    print(f"errors: {summary['errors']:,} ({percent(summary['error_rate'])}); "
          f"mean confidence: {percent(summary['mean_confidence'])}")
    print(f"latency p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, p99 {ms(lat['p99'])}")
    if summary["top_foods"]:
        print("top foods: " + ", ".join(f"{display_name(f['label'])} {f['count']:,}" for f in summary["top_foods"]))
    for d in summary["daily"][-14:]:
        print(f"  {d['day']}  {d['count']:>8,}  ({d['errors']:,} errors)")
    return 0
