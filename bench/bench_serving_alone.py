"""The serving path alone, in a process that never imports TensorFlow (as the app and the CLI serve).

`bench_predict.py` times LiteRT interleaved with Keras in one process (a ratio against the
baseline), so TensorFlow's thread pools share the cores with it. This shows what serving
alone costs: one photo whole and by parts (decode, crop-resize, forward pass, head), to
tell which part holds the 8 ms bar of issue 15, and batch throughput with the process's
CPU a photo (what bounds photos/s on two free cores).

    .venv/bin/python bench/bench_serving_alone.py [--n 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def median_ms(fn, n: int) -> tuple[float, float, float]:
    """(median, p10, p95) in ms of ``n`` calls after 5 warm-ups."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[n // 10], samples[int(n * 0.95)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="batch rounds of 256 photos")
    args = ap.parse_args()
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
    from nutrilearn.serving import load_classifier
    from nutrilearn.vision.images import crop_and_resize, decode_image

    clf = load_classifier(Settings.from_env())
    photo = sorted((FOOD10 / "test" / "breakfast_burrito").glob("*.jpg"))[0].read_bytes()
    image = decode_image(photo, 10**8, 10**8).image
    pixels = crop_and_resize(image)[None]
    feats = clf.features(pixels)
    whole = median_ms(lambda: clf.predict(crop_and_resize(decode_image(photo, 10**8, 10**8).image)[None]), args.n)
    print(f"load average {os.getloadavg()[0]:.2f}; TensorFlow imported: {'tensorflow' in sys.modules}")
    print("whole photo: median %.2f ms, p10 %.2f, p95 %.2f" % whole)
    for name, fn in (("decode", lambda: decode_image(photo, 10**8, 10**8)), ("crop-resize", lambda: crop_and_resize(image)),
                     ("forward pass", lambda: clf.features(pixels)), ("head + top-5", lambda: clf.classify(feats))):
        print(f"  {name}: median %.2f ms" % median_ms(fn, args.n)[0])
    analyzer = Analyzer(clf, ModelInfo(), Settings.from_env())
    items = [Photo(f.name, f.read_bytes()) for f in sorted((FOOD10 / "test").rglob("*.jpg"))[:256]]
    analyzer.analyze(items[:32], user="bench", batch_size=32)  # warm-up: the per-core interpreters
    for _ in range(args.rounds):
        t, c = time.perf_counter(), time.process_time()
        records = analyzer.analyze(items, user="bench", batch_size=32)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        assert all(r.ok for r in records)
        print(f"batches of 32, {len(items)} photos: {len(items) / wall:.1f} photos/s, "
              f"{cpu * 1000 / len(items):.1f} ms CPU a photo, {cpu / wall:.2f} cores busy")
    print(f"load average after {os.getloadavg()[0]:.2f}; TensorFlow imported: {'tensorflow' in sys.modules}")


if __name__ == "__main__":
    main()
