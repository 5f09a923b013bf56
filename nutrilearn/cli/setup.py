"""``nutrilearn setup``: build and cache the model so the app starts fast."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setup", help="build the model from the packaged ImageNet weights (once)")
    p.add_argument("--rebuild", action="store_true", help="build again even if models/ has it")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.vision.network import ensure_model
    from nutrilearn.vision.weights import WeightsError

    settings = Settings.from_env()
    start = time.perf_counter()
    try:
        path = ensure_model(settings.models_dir, rebuild=args.rebuild)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"model ready: {path} ({time.perf_counter() - start:.1f} s)")
    return register_version_one(settings)


def register_version_one(settings) -> int:
    """Version 1 (the ImageNet food head) in the Model Registry as ``@champion``; idempotent."""
    from nutrilearn.registry.jobs import ensure_version_one

    try:
        version, created = ensure_version_one(settings)
    except Exception as exc:  # the model is built; say what is left to do
        print(f"error: could not register version 1 in {settings.tracking_uri}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    state = "registered" if created else "already registered"
    print(f"version {version} (ImageNet food head) {state} as nutrilearn-food-classifier")
    return 0
