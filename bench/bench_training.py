"""Training speed and accuracy: ``nutrilearn train`` on food10/train, scored on food10/test.

Run:  .venv/bin/python bench/bench_training.py [--seeds 3]

Measures, in one process with the backbone already loaded:
- cold: ``train`` on food10/train with no feature cache (a fresh cache folder): decode +
  backbone on 1,000 photos and their mirror images, fit, evaluate on the held-out
  validation split, log and register (a throwaway sqlite store);
- warm: the same with the training features cached, now also evaluated on food10/test
  (whose features are computed in this step: 500 more photos);
- the fit alone over several seeds (accuracy spread on food10/test).
The issue's budget is 3 minutes on these 2 cores for the whole ``train``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not (FOOD10 / "train").is_dir():
        raise SystemExit(f"needs real photos at {FOOD10}")

    from nutrilearn.config import Settings
    from nutrilearn.registry.features import load_dataset
    from nutrilearn.registry.jobs import train_version
    from nutrilearn.registry.metrics import evaluate_head
    from nutrilearn.registry.training import TrainConfig, train_linear_head
    from nutrilearn.vision.classifier import FoodClassifier
    from nutrilearn.vision.network import MODEL_FILENAME, ensure_model

    t0 = time.perf_counter()
    ensure_model(ROOT / "models")
    classifier = FoodClassifier.load(ROOT / "models")
    print(f"backbone load: {time.perf_counter() - t0:.1f} s (once per process; not part of the figures below)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"  # fresh feature cache, same model file
        models.mkdir()
        os.symlink(ROOT / "models" / MODEL_FILENAME, models / MODEL_FILENAME)
        (tmp / "mlruns").mkdir()
        settings = Settings(home=tmp, tracking_uri=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}", models_dir=models)
        from nutrilearn.registry.store import Registry

        Registry(settings).ensure_registered_model()  # create the store outside the timings (~5 s once)
        runs = (("cold: train/ only, no feature cache", []),
                ("warm: train/ + evaluate on test/", [FOOD10 / "test"]))
        for label, eval_data in runs:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            out = train_version(settings, [FOOD10 / "train"], classifier, eval_data=eval_data)
            total = time.perf_counter() - start
            print(f"{label}: {total:.1f} s total (features {out['feature_seconds']:.1f} s, "
                  f"fit {out['fit_seconds']:.1f} s, best epoch {out['best_epoch']}; load average {load:.1f}); "
                  f"accuracy {out['accuracy']:.3f} on {out['eval_data']}, macro F1 {out['f1_macro']:.3f}, top-5 "
                  f"{out['top5_accuracy']:.3f}, ECE {out['ece']:.3f}, log loss {out['log_loss']:.3f}")

        train = load_dataset([FOOD10 / "train"], classifier, settings, flips=True)
        test = load_dataset([FOOD10 / "test"], classifier, settings)
        variants = {
            "recipe (defaults)": {},
            "flip augmentation": {"flip_augment": True},
            "no refit on train+val": {"refit_full": False},
            "weaker L2 (0.003)": {"l2": 0.003},
            "no temperature scaling": {"calibrate": False},
        }
        for name, overrides in variants.items():
            accs, eces, secs = [], [], []
            for seed in range(args.seeds):
                result = train_linear_head(train.pooled, train.labels, train.pooled_flip,
                                           TrainConfig(**overrides, seed=seed))
                ev = evaluate_head(result.head, test.labels, test.pooled, test.logits)
                accs.append(ev.accuracy)
                eces.append(ev.ece)
                secs.append(result.seconds)
            print(f"fit {name:<24} accuracy {statistics.mean(accs):.3f} (min {min(accs):.3f}, max {max(accs):.3f}), "
                  f"ECE {statistics.mean(eces):.3f}, {statistics.mean(secs):.1f} s, seeds {args.seeds}")
        shutil.rmtree(models / "feature-cache", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
