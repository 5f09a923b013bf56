"""Fuzz the image path for a few minutes: every input must decode or fail with an ImageError.

Run:  .venv/bin/python bench/fuzz_images.py [--minutes 3]
Mutates valid JPEG/PNG/GIF/WebP/BMP/TIFF/16-bit seeds (bit flips, truncation, insertion,
zeroed runs) and random bytes; any other exception is a finding, printed and saved.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nutrilearn.vision.images import ImageError, crop_and_resize, decode_image, image_stats  # noqa: E402
from tests.test_hostile import SEEDS  # noqa: E402


def mutate(rng: np.random.Generator) -> bytes:
    if rng.random() < 0.05:
        return rng.bytes(int(rng.integers(0, 4096)))
    data = bytearray(SEEDS[int(rng.integers(len(SEEDS)))])
    for _ in range(int(rng.integers(1, 10))):
        op, pos = int(rng.integers(4)), int(rng.integers(max(1, len(data))))
        if op == 0 and data:
            data[pos % len(data)] ^= int(rng.integers(1, 256))
        elif op == 1:
            del data[pos:]
        elif op == 2:
            data[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
        else:
            data[pos : pos + 16] = bytes(len(data[pos : pos + 16]))
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    outcomes: Counter[str] = Counter()
    findings = 0
    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline:
        data = mutate(rng)
        try:
            decoded = decode_image(data, max_bytes=5_000_000, max_pixels=20_000_000)
            pixels = crop_and_resize(decoded.image)
            image_stats(pixels, decoded.width / decoded.height)
            outcomes["decoded"] += 1
        except ImageError as exc:
            outcomes[exc.kind] += 1
        except Exception:  # a finding: anything but a per-file ImageError
            findings += 1
            path = ROOT / "test-artifacts" / f"fuzz-finding-{findings}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            print(f"FINDING saved to {path}:\n{traceback.format_exc()}", file=sys.stderr)
    total = sum(outcomes.values()) + findings
    print(f"{total} inputs in {args.minutes:g} min: {dict(outcomes)}; findings (escaped exceptions): {findings}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
