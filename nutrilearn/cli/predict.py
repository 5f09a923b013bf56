"""``nutrilearn predict PATH...``: one result per photo.

Exit status: 0 when every photo was predicted and logged; 1 when a photo failed; 3 when
predictions were made but some could not be logged durably (the spool refused them, e.g.
a full disk): stderr names those photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="name the food in photos (files or folders)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--user", default="cli", help="user name recorded with the predictions")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-track", action="store_true", help="do not log the predictions to MLflow")
    p.add_argument("--flush-timeout", type=float, default=0.0, metavar="S",
                   help="seconds to wait for MLflow before exiting (default 0: records are durable in the "
                   "spool at exit and a detached flusher sends them to MLflow after)")
    p.set_defaults(handler=run)


def result_dict(path: Path, record) -> dict:
    """The stable JSON shape of one result (documented in the README)."""
    return {
        "path": str(path),
        "status": record.status,
        "label": record.label,
        "confidence": record.confidence,
        "is_food": record.is_food,
        "top5": [{"label": l, "probability": p} for l, p in zip(record.top5_labels, record.top5_probs)],
        "error_type": record.error_type,
        "error": record.error_message,
        "request_id": record.request_id,
        "model_version": record.model_version,
        "latency_ms": record.total_ms,
    }


def _text_line(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['path']}\tERROR\t{row['error_type']}: {row['error']}"
    from nutrilearn.answers import percent
    from nutrilearn.vision.vocabulary import display_name

    return f"{row['path']}\t{display_name(row['label'])}\t{percent(row['confidence'])}"


def _leave_in_spool(tracker, settings) -> list[str]:
    """Close the spool (durable: its WAL is fsynced) and hand the records to a detached
    flusher; returns the request ids the spool refused (lost when this process ends)."""
    from nutrilearn.cli import handoff

    lost = tracker.not_durable()
    tracker.spool.close()
    if lost:
        print(f"error: {len(lost)} prediction record(s) could not be logged: the spool at {tracker.spool.path} "
              "refused them. Free disk space there and predict those photos again.", file=sys.stderr)
    handoff.start(settings.spool_dir)
    return lost


def run(args: argparse.Namespace) -> int:
    from nutrilearn.cli.progress import progress_bar
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Photo, photos_from_paths
    from nutrilearn.serving import build_analyzer
    from nutrilearn.tracking.records import STATUS_ERROR, PredictionRecord, new_request_id, utc_now

    settings = Settings.from_env()
    found = photos_from_paths(args.paths)
    if not found:
        print("error: no photos found (looked for .jpg .jpeg .png .webp .gif .bmp .tif)", file=sys.stderr)
        return 1
    tracker = None
    if not args.no_track and args.flush_timeout > 0:
        from nutrilearn.cli.tracking import open_logger

        tracker = open_logger(settings)
    elif not args.no_track:  # spool only: no MLflow import in this process (see cli/handoff.py)
        from nutrilearn.tracking.logger import PredictionLogger

        tracker = PredictionLogger(settings, start=False)
    analyzer = build_analyzer(settings, sink=tracker)
    readable = [(path, item) for path, item in found if isinstance(item, Photo)]
    with progress_bar("predicting", len(readable)) as update:
        records = analyzer.analyze([photo for _, photo in readable], user=args.user, source="cli",
                                   batch_size=args.batch_size, progress=update)
    by_path = {id(photo): rec for (_, photo), rec in zip(readable, records)}
    failed = 0
    path_of: dict[str, Path] = {}
    for path, item in found:
        rec = by_path.get(id(item))
        if rec is None:  # never reached the model: say so in the same shape
            rec = PredictionRecord(new_request_id(), utc_now(), args.user, analyzer.model.name,
                                   analyzer.model.version, analyzer.model.alias, STATUS_ERROR, "cli",
                                   path.name, item.kind, item.message)
            if tracker is not None:  # failed requests are records too
                tracker.submit(rec)
        row = result_dict(path, rec)
        path_of[rec.request_id] = path
        failed += rec.status != "ok"
        print(json.dumps(row) if args.json else _text_line(row), flush=True)
    lost: list[str] = []
    if tracker is not None and args.flush_timeout > 0:
        from nutrilearn.cli.tracking import final_flush

        _, lost = final_flush(tracker, args.flush_timeout)
    elif tracker is not None:
        lost = _leave_in_spool(tracker, settings)
    if tracker is not None:
        for rid in lost:
            print(f"not logged: {path_of.get(rid, rid)}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(found)} photos failed; see the error column for each", file=sys.stderr)
    return 1 if failed else 3 if lost else 0
