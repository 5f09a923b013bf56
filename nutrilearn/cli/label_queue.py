"""``nutrilearn label-queue``: the predictions most worth a person's label, and why.

Over the last ``--days`` days (served answers, never one already labelled): the least
confident, those the challenger answered differently, and those in photo clusters that
grew against the ``--reference-days`` before (see ``nutrilearn.monitoring.label_queue``).
Label them on the app's Label page; each label becomes a feedback record.
"""

from __future__ import annotations

import argparse
import json
import sys

from nutrilearn.cli.arguments import non_negative, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label-queue", help="the predictions most worth labelling, with the reason for each",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=positive_int, default=20, metavar="N", help="items in the queue (20)")
    p.add_argument("--days", type=float, default=7.0, metavar="D", help="window: the last D days (7)")
    p.add_argument("--reference-days", type=non_negative, default=28.0, metavar="R",
                   help="compare photo clusters with the R days before the window (28; 0: no cluster reasons)")
    p.add_argument("--json", action="store_true", help='print {"items": [...], ...} as one JSON object')
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nutrilearn.answers import percent
    from nutrilearn.config import Settings
    from nutrilearn.monitoring.label_queue import build_queue
    from nutrilearn.tracking.reader import PredictionReader
    from nutrilearn.vision.vocabulary import display_name

    if not args.days > 0:
        print("error: --days must be positive", file=sys.stderr)
        return 2
    reader = PredictionReader(Settings.from_env())
    try:
        reader.refresh()
        if reader.last_error:
            print(f"warning: {reader.last_error}; answering from the local mirror and spool", file=sys.stderr)
        queue = build_queue(reader, args.n, days=args.days, reference_days=args.reference_days or None)
    except Exception as exc:  # an unreadable store: say so, exit 2 like drift
        print(f"error: could not build the queue: {exc}", file=sys.stderr)
        return 2
    finally:
        reader.close()
    if args.json:
        print(json.dumps(queue.to_dict()))
        return 0
    print(f"{len(queue.items)} to label of {queue.unlabelled:,} unlabelled answers in the last {args.days:g} days "
          f"({queue.labelled:,} labelled); mean confidence {percent(queue.mean_confidence)} in the queue, "
          f"{percent(queue.window_mean_confidence)} in the window")
    for note in queue.notes:
        print(f"note: {note}")
    for i, item in enumerate(queue.items, 1):
        print(f"{i:>3}. {item.request_id}  {display_name(item.label)} {percent(item.confidence)}  — {item.reason}")
    return 0
