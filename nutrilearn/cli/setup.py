"""``nutrilearn setup``: build the Keras model, convert it to LiteRT and check it, so serving starts fast."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setup", help="build the model from the packaged ImageNet weights and convert it for "
                       "serving (once)")
    p.add_argument("--rebuild", action="store_true", help="build again even if models/ has it")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.vision.conversion import ensure_tflite
    from nutrilearn.vision.model_files import ModelFileError, tflite_path
    from nutrilearn.vision.network import ensure_model
    from nutrilearn.vision.weights import WeightsError

    settings = Settings.from_env()
    start = time.perf_counter()
    try:
        path = ensure_model(settings.models_dir, rebuild=args.rebuild)
        print(f"model ready: {path} ({time.perf_counter() - start:.1f} s)")
        start = time.perf_counter()
        manifest = ensure_tflite(settings.models_dir, rebuild=args.rebuild)
    except (WeightsError, ModelFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving model ready: {tflite_path(settings.models_dir)} ({time.perf_counter() - start:.1f} s; "
          f"LiteRT vs Keras on {manifest.check_inputs} inputs: max difference "
          f"{max(manifest.max_abs_diff_logits, manifest.max_abs_diff_pooled):.1e}; "
          f"sha256 {manifest.tflite_sha256[:12]}, from .keras {manifest.keras_sha256[:12]})")
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
    # Download the served heads now, so serving reads its aliases without MLflow from the start.
    from nutrilearn.serving import current_models

    current_models(settings, force=True)
    return 0
