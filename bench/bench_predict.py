"""Prediction speed: one photo (ours vs model.predict), batches, and app start to first answer.

Run:  .venv/bin/python bench/bench_predict.py [--repeats 50]
Ratios are against baselines measured in the same process, since these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def _photos(n: int) -> list[bytes]:
    files = sorted(FOOD10.glob("test/*/*.jpg"))
    if not files:
        raise SystemExit(f"needs real photos at {FOOD10}")
    return [files[i % len(files)].read_bytes() for i in range(n)]


def single_photo(classifier, data: bytes, repeats: int) -> dict:
    import numpy as np

    from nutrilearn.vision.images import crop_and_resize, decode_image, normalise

    def ours() -> None:
        pixels = crop_and_resize(decode_image(data, 10**8, 10**8).image)
        classifier.predict(pixels[None])

    def keras_predict() -> None:
        pixels = crop_and_resize(decode_image(data, 10**8, 10**8).image)
        classifier.backbone.predict(normalise(pixels[None]), verbose=0)

    times = {}
    for name, fn in (("tf.function", ours), ("model.predict", keras_predict)):
        for _ in range(3):
            fn()  # warm-up (tracing)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        times[name] = {"median_ms": statistics.median(samples), "p95_ms": float(np.percentile(samples, 95))}
    times["speedup"] = times["model.predict"]["median_ms"] / times["tf.function"]["median_ms"]
    return times


def _sequential(analyzer, items, batch_size: int):
    """Baseline: decode a chunk, then run the model on it, one after the other."""
    out = []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        out.extend(analyzer._predict(analyzer._prepare(chunk, [None] * len(chunk), "bench", "api")))
    return out


def batch_throughput(analyzer, photos: list[bytes], batch_size: int) -> dict:
    from nutrilearn.pipeline import Photo

    items = [Photo(f"{i}.jpg", d) for i, d in enumerate(photos)]
    analyzer.analyze(items[:batch_size], user="bench", batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    records = analyzer.analyze(items, user="bench", batch_size=batch_size)
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    baseline = _sequential(analyzer, items, batch_size)
    base_s = time.perf_counter() - t1
    assert all(r.ok for r in records) and len(baseline) == len(records)
    return {"photos": len(items), "batch_size": batch_size, "seconds": elapsed, "photos_per_s": len(items) / elapsed,
            "sequential_photos_per_s": len(items) / base_s}


APP_START = textwrap.dedent(
    """
    import time, sys
    t0 = time.perf_counter()
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file("app.py", default_timeout=120).run()
    at.file_uploader(key="uploads").set_value([("photo.jpg", open(sys.argv[1], "rb").read(), "image/jpeg")])
    at.run()
    assert not at.exception, at.exception
    assert at.subheader, "no prediction shown"
    print(time.perf_counter() - t0, at.subheader[0].value)
    """
)


def app_start_to_first_prediction(photo: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", APP_START, str(photo)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUTRILEARN_HOME": "/tmp/nutrilearn-bench-start",
                                           "NUTRILEARN_MODELS_DIR": str(ROOT / "models")})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    inner, answer = out.stdout.strip().splitlines()[-1].split(" ", 1)
    return {"process_wall_s": wall, "in_process_s": float(inner), "answer": answer}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--batch-photos", type=int, default=256)
    args = ap.parse_args()

    from nutrilearn.config import Settings
    from nutrilearn.serving import load_classifier

    settings = Settings.from_env()
    classifier = load_classifier(settings)
    photo = sorted(FOOD10.glob("test/breakfast_burrito/*.jpg"))[0]
    single = single_photo(classifier, photo.read_bytes(), args.repeats)
    print(f"one photo, decode+preprocess+forward: median {single['tf.function']['median_ms']:.1f} ms "
          f"(p95 {single['tf.function']['p95_ms']:.1f}); model.predict on the same photo: "
          f"median {single['model.predict']['median_ms']:.1f} ms -> {single['speedup']:.1f}x faster")
    from nutrilearn.pipeline import Analyzer, ModelInfo

    analyzer = Analyzer(classifier, ModelInfo(), settings)
    for bs in (16, 32):
        b = batch_throughput(analyzer, _photos(args.batch_photos), bs)
        print(f"batch {bs}: {b['photos']} photos in {b['seconds']:.2f} s = {b['photos_per_s']:.1f} photos/s "
              f"(decode overlapped with the model); sequential in the same run: "
              f"{b['sequential_photos_per_s']:.1f} photos/s -> {b['photos_per_s'] / b['sequential_photos_per_s']:.2f}x")
    start = app_start_to_first_prediction(photo)
    print(f"app start to first prediction (new process, AppTest, model built): {start['process_wall_s']:.1f} s "
          f"wall ({start['in_process_s']:.1f} s after interpreter start); answer: {start['answer']}")


if __name__ == "__main__":
    main()
