"""``nutrilearn replay``: real predictions on labelled photos, logged as simulated traffic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nutrilearn.cli.arguments import positive_float, positive_int, share


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay labelled photos as traffic over simulated days (tagged source=replay)",
        description="Samples N photos from class folders (DIR/<label>/*.jpg; with replacement when N "
        "exceeds the photos), predicts them for real, and logs the records as if U users had sent "
        "them over the last D days (daily rhythm, UTC). Each distinct photo is predicted once and "
        "its result reused for repeats unless --no-reuse. A share F of the successful predictions "
        "gets feedback with the true label (the folder name). Replayed records are tagged "
        "source=replay; the monitoring page hides them unless asked.",
    )
    p.add_argument("--photos", required=True, type=Path, metavar="DIR", help="folder of class folders")
    p.add_argument("--n", required=True, type=positive_int, metavar="N", help="predictions to log")
    p.add_argument("--days", type=positive_float, default=7.0, metavar="D", help="simulated span ending now (7)")
    p.add_argument("--users", type=positive_int, default=5, metavar="U", help="simulated users (5)")
    p.add_argument("--feedback-share", type=share, default=0.2, metavar="F",
                   help="share of successful predictions given feedback (0.2)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0): same seed, same traffic")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--no-reuse", action="store_true", help="predict every sampled photo, repeats included")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--flush-timeout", type=float, default=60.0, metavar="S",
                   help="how long to wait for MLflow at the end (records stay spooled if it is not reached)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nutrilearn.cli.progress import progress_bar
    from nutrilearn.cli.tracking import final_flush, open_logger
    from nutrilearn.config import Settings
    from nutrilearn.replay import labelled_photos, replay
    from nutrilearn.serving import build_analyzer

    settings = Settings.from_env()
    try:
        available = len(labelled_photos(args.photos))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not available:
        print(f"error: no photos in class folders under {args.photos} (expected DIR/<label>/*.jpg)", file=sys.stderr)
        return 1
    logger = open_logger(settings)
    try:
        analyzer = build_analyzer(settings)
        with progress_bar("predicting", None) as update:
            result = replay(args.photos, args.n, args.days, args.users, args.feedback_share, args.seed,
                            analyzer=analyzer, sink=logger, batch_size=args.batch_size,
                            reuse_predictions=not args.no_reuse, progress=update)
    except BaseException:
        logger.close(timeout=0.0)
        raise
    flushed, lost = final_flush(logger, args.flush_timeout)
    summary = {
        "predictions": len(result.records), "errors": result.errors, "feedback": len(result.feedback),
        "photos_available": result.photos_available, "distinct_photos": result.distinct_photos,
        "forward_passes": result.predicted, "users": args.users, "days": args.days,
        "first": result.records[0].timestamp.isoformat(), "last": result.records[-1].timestamp.isoformat(),
        "model_version": result.records[0].model_version, "source": "replay",
        "seconds": round(result.elapsed_s, 2), "flushed": flushed, "not_logged": len(lost),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"replayed {summary['predictions']} predictions ({summary['errors']} failed) from "
              f"{summary['distinct_photos']} distinct photos ({summary['forward_passes']} forward passes) "
              f"as {args.users} users over {args.days:g} days, {summary['feedback']} with feedback; "
              f"model version {summary['model_version']}; {summary['seconds']} s")
    return 3 if lost else 0
