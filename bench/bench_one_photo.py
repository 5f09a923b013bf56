"""One photo through the serving path, alone: a process that never imports TensorFlow.

`bench_predict.py` times LiteRT interleaved with Keras in one process (a ratio against the
baseline); this shows what the serving path alone costs a photo, whole and by parts (decode,
crop-resize, forward pass, head), to tell which part holds the 8 ms bar of issue 15.

    .venv/bin/python bench/bench_one_photo.py [--n 200]
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
    args = ap.parse_args()
    from nutrilearn.config import Settings
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


if __name__ == "__main__":
    main()
