"""Should serving use a full-integer (int8) LiteRT model? Speed and food10 accuracy, same run.

Run:  .venv/bin/python bench/bench_quantization.py [--calibration 200] [--repeats 30]

The rule (issue 15): only if top-1 on food10 stays within 0.5 points of the float model.
Builds, in memory (nothing is written to models/):
- the float model serving uses (as ``nutrilearn setup`` converts it);
- a full-integer model: every op int8, calibrated on ``--calibration`` food10 *train*
  photos, float input and outputs (so the pipeline is unchanged).
Then: forward time of one photo (median, interleaved), and accuracy on food10/test of a
linear head trained on the float model's features of food10/train (what ``train`` does:
training stays on the float network), with test features from each model; plus how
often the ImageNet food head (version 1) gives the same label.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def _inputs(files: list[Path]):
    import numpy as np

    from nutrilearn.vision.images import crop_and_resize, decode_image, normalise

    return np.stack([normalise(crop_and_resize(decode_image(f.read_bytes(), 10**8, 10**8).image)) for f in files])


def _int8_model(model, calibration) -> bytes:
    import tensorflow as tf

    from nutrilearn.vision.images import INPUT_SIZE

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((1, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def main() -> None:
    import numpy as np

    from nutrilearn.registry.training import train_linear_head
    from nutrilearn.vision.classifier import FoodClassifier
    from nutrilearn.vision.conversion import convert
    from nutrilearn.vision.keras_runtime import KerasBackbone
    from nutrilearn.vision.litert import LiteRTBackbone

    ap = argparse.ArgumentParser()
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    train = sorted(FOOD10.glob("train/*/*.jpg"))
    test = sorted(FOOD10.glob("test/*/*.jpg"))
    if not train or not test:
        raise SystemExit(f"needs real photos at {FOOD10}")
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)

    keras = KerasBackbone.load(ROOT / "models")
    rng = np.random.default_rng(0)
    calibration = _inputs([train[i] for i in rng.choice(len(train), args.calibration, replace=False)])
    t0 = time.perf_counter()
    models = {"float32": convert(keras.model), "int8": _int8_model(keras.model, calibration)}
    print(f"converted both in {time.perf_counter() - t0:.0f} s; sizes: "
          + ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in models.items()), flush=True)
    backbones = {k: LiteRTBackbone(v) for k, v in models.items()}

    x = calibration[:1]
    for b in backbones.values():
        for _ in range(3):
            b.forward(x)
    samples: dict[str, list[float]] = {k: [] for k in backbones}
    for _ in range(args.repeats):
        for k, b in backbones.items():
            t = time.perf_counter()
            b.forward(x)
            samples[k].append((time.perf_counter() - t) * 1000)
    speed = {k: statistics.median(s) for k, s in samples.items()}
    print("forward pass, one photo, median of %d: " % args.repeats
          + "; ".join(f"{k} {v:.1f} ms" for k, v in speed.items())
          + f" -> int8 is {speed['float32'] / speed['int8']:.2f}x the float speed", flush=True)

    train_x, test_x = _inputs(train), _inputs(test)
    train_labels = [f.parent.name for f in train]
    test_labels = np.array([f.parent.name for f in test])
    float_train = backbones["float32"].forward(train_x)
    head = train_linear_head(float_train[1], train_labels).head
    labels = np.array(head.labels)
    acc, v1 = {}, {}
    for k, b in backbones.items():
        logits, pooled = b.forward(test_x)
        acc[k] = float((labels[head.probabilities(logits, pooled).argmax(1)] == test_labels).mean())
        clf = FoodClassifier(b)
        v1[k] = [p.label for p in clf.classify(clf_features(logits, pooled))]
    same_v1 = sum(a == b for a, b in zip(v1["float32"], v1["int8"]))
    print(f"food10/test top-1 of a head trained on float features: float32 {acc['float32']:.3f}, "
          f"int8 {acc['int8']:.3f} ({(acc['int8'] - acc['float32']) * 100:+.1f} points; the bar is 0.5)", flush=True)
    print(f"version 1 (ImageNet food head) labels equal on {same_v1}/{len(test)} test photos", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def clf_features(logits, pooled):
    from nutrilearn.vision.classifier import Features

    return Features(logits, pooled)


if __name__ == "__main__":
    main()
