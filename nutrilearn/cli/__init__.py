"""The ``nutrilearn`` command: the app's jobs from a shell.

Each feature keeps its subcommands in a module here with a ``register(subparsers)``
function; ``main`` only assembles them. Heavy imports happen inside the handlers, so
``nutrilearn --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# Modules under nutrilearn.cli that contribute subcommands, in help order.
COMMAND_MODULES = ("setup", "predict", "tracking", "monitor", "models", "meals", "replay", "drift", "label_queue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nutrilearn",
        description="Food photo classifier with MLflow monitoring. Settings come from the "
        "environment (MLFLOW_TRACKING_URI, DATABASE_URL, NUTRILEARN_*); see README.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"nutrilearn.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
