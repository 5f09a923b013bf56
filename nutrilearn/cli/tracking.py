"""Tracking from a shell: ``nutrilearn export-predictions`` and ``nutrilearn flush-predictions``.

Also the two helpers ``nutrilearn predict`` uses to log what it predicts: ``open_logger``
and ``final_flush`` (records are durable in the spool before the command exits; the final
flush only tries for a short while, and says on stderr what it left for the next one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

FORMATS = ("csv", "parquet", "json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-predictions",
        help="write logged predictions (or feedback) to CSV, Parquet or JSON",
        description="Reads every prediction batch from MLflow plus records still in the local "
        "spool, one row per request id. Times are UTC; naive --since/--until are taken as UTC.",
    )
    p.add_argument("--format", choices=FORMATS,
                   help="json means JSON Lines (one object a line); default: from the file's suffix, else csv")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="'-' for stdout (csv, json)")
    p.add_argument("--since", metavar="TIME", help="ISO time, inclusive (e.g. 2026-11-27 or 2026-11-27T10:00)")
    p.add_argument("--until", metavar="TIME", help="ISO time, exclusive")
    p.add_argument("--model-version", action="append", metavar="V", help="repeat for several")
    p.add_argument("--user", action="append", metavar="NAME", help="repeat for several")
    p.add_argument("--source", action="append", choices=("app", "cli", "replay", "api"))
    p.add_argument("--exclude-replayed", action="store_true", help="leave out replayed traffic")
    p.add_argument("--no-pending", action="store_true", help="only what is in MLflow, not the local spool")
    p.add_argument("--feedback", action="store_true", help="export feedback records instead")
    p.add_argument("--no-thumbnails", action="store_true",
                   help="leave out the thumbnail column (WebP bytes; base64 in CSV and JSON)")
    p.set_defaults(handler=run_export)

    f = sub.add_parser("flush-predictions", help="send spooled predictions to MLflow now and show the spool",
                       description="Exit status: 0 when everything live reached MLflow and nothing is set "
                       "aside; 1 when records still wait (MLflow down, timed out) or dead letters remain.")
    f.add_argument("--timeout", type=float, default=60.0, metavar="S")
    f.add_argument("--retry-dead-letters", action="store_true",
                   help="put batches set aside after failing to write back in line first")
    f.add_argument("--json", action="store_true", help="one JSON object: counts, dead letters, errors")
    f.set_defaults(handler=run_flush)


# -- helpers for nutrilearn predict ---------------------------------------------------


def open_logger(settings):
    """A logger whose flusher starts importing MLflow at once, beside the model load."""
    from nutrilearn.tracking.logger import PredictionLogger

    return PredictionLogger(settings, prewarm=True)


def final_flush(logger, timeout: float) -> tuple[bool, list[str]]:
    """Try to get everything into MLflow; if not, say where it waits. Always closes.

    Returns ``(flushed, lost)``: ``lost`` are the request ids that never became durable
    (the spool refused them, e.g. a full disk) and are gone now that the logger closed.
    """
    flushed = logger.flush(timeout)
    status = logger.status()
    logger.close(timeout=0.0)
    lost = logger.not_durable()
    if not flushed and status.pending:
        why = status.last_error or f"MLflow did not finish within {timeout:g} s"
        print(f"warning: MLflow not reached ({why}).\n"
              f"{status.pending} prediction record(s) are safe in the spool at {status.spool_path} and go "
              "with the next flush: `nutrilearn flush-predictions`, or any later app or CLI run.",
              file=sys.stderr)
    if lost:
        print(f"error: {len(lost)} prediction record(s) could not be logged: the spool at {status.spool_path} "
              f"refused them ({status.spool_error or 'write failed'}). Free disk space there and predict "
              "those photos again.", file=sys.stderr)
    return flushed, lost


# -- flush-predictions -----------------------------------------------------------------


def _dead_letter_dict(d) -> dict:
    from datetime import datetime, timezone

    return {"batch_id": d.batch_id, "kind": d.kind, "records": d.n, "attempts": d.attempts,
            "last_error": d.last_error, "dead_at": datetime.fromtimestamp(d.dead_at, timezone.utc).isoformat()}


def run_flush(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger

    settings = Settings.from_env()
    logger = PredictionLogger(settings, start=True)
    retried = logger.retry_dead_letters() if args.retry_dead_letters else 0
    before = logger.spool_pending()
    flushed = logger.flush(args.timeout)
    status = logger.status()
    dead = logger.dead_letters()
    logger.close(timeout=0.0)
    pending = status.pending or 0
    ok = flushed and not dead
    if args.json:
        print(json.dumps({
            "tracking_uri": status.tracking_uri, "spool": status.spool_path, "flushed": flushed,
            "sent": max(0, before - pending), "waiting": status.pending, "retried_dead_letters": retried,
            "dead_letters": [_dead_letter_dict(d) for d in dead],
            "dead_records": sum(d.n for d in dead), "wal_bytes": status.wal_bytes,
            "last_error": status.last_error, "spool_error": status.spool_error,
        }, indent=2))
    else:
        print(f"tracking: {status.tracking_uri}\nspool: {status.spool_path}\n"
              f"sent: {max(0, before - pending)} record(s); waiting: {pending}"
              + (f"; put back in line: {retried}" if retried else ""))
        if dead:
            print(f"set aside: {sum(d.n for d in dead)} record(s) in {len(dead)} dead letter(s):")
            for d in dead:
                print(f"  {d.batch_id}  {d.kind}  {d.n} record(s), {d.attempts} attempt(s): {d.last_error}")
            print("`nutrilearn flush-predictions --retry-dead-letters` tries them again.")
    if not flushed:
        print(f"error: {status.last_error or 'timed out'}", file=sys.stderr)
    return 0 if ok else 1


# -- export-predictions ----------------------------------------------------------------


def _format_for(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    by_suffix = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}
    return by_suffix.get(args.output.suffix.lower(), "csv")


def _plain(value):
    """List columns and bytes as CSV/JSON can hold them."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def export_frame(df, fmt: str, out: Path) -> None:
    """Write ``df`` to ``out`` (atomically for files) in ``fmt``."""
    if fmt == "parquet":
        if str(out) == "-":
            raise SystemExit("error: parquet needs a file, not stdout")
        target = out.with_name(out.name + ".tmp")
        df.to_parquet(target, index=False)
        os.replace(target, out)
        return
    df = df.copy()
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].map(_plain)
    if fmt == "csv":
        for column in ("top5_labels", "top5_probs"):
            if column in df:
                df[column] = df[column].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
        text = df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    else:
        text = df.to_json(orient="records", date_format="iso", date_unit="us", lines=True)
    if str(out) == "-":
        sys.stdout.write(text)
        return
    target = out.with_name(out.name + ".tmp")
    target.write_text(text, encoding="utf-8")
    os.replace(target, out)


def run_export(args: argparse.Namespace) -> int:
    import pandas as pd

    from nutrilearn.config import Settings
    from nutrilearn.tracking.reader import PredictionReader
    from nutrilearn.tracking.records import PREDICTION_FIELDS, ROW_FIELDS

    for name in ("since", "until"):
        value = getattr(args, name)
        if value is not None:
            try:
                pd.Timestamp(value)
            except (ValueError, TypeError):
                print(f"error: --{name} {value!r} is not a time (try 2026-11-27T10:00)", file=sys.stderr)
                return 2
    fmt = _format_for(args)
    reader = PredictionReader(Settings.from_env())
    try:
        if args.feedback:
            df = reader.feedback(start=args.since, end=args.until, user=args.user,
                                 include_pending=not args.no_pending)
        else:
            df = reader.predictions(start=args.since, end=args.until, model_version=args.model_version,
                                    user=args.user, source=args.source,
                                    include_replayed=not args.exclude_replayed,
                                    include_pending=not args.no_pending,
                                    columns=ROW_FIELDS if args.no_thumbnails else PREDICTION_FIELDS)
    finally:
        reader.close()
    export_frame(df, fmt, args.output)
    what = "feedback record(s)" if args.feedback else "prediction(s)"
    print(f"wrote {len(df)} {what} to {args.output} ({fmt})", file=sys.stderr)
    return 0
