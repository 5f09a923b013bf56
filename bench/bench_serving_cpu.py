"""CPU a photo on the serving path: today's code against the code before issue 15's CPU work,
in the same process, rounds interleaved (these 2 cores are shared: only same-run ratios
mean much).

Run:  flock /tmp/nutrilearn-bench.lock .venv/bin/python bench/bench_serving_cpu.py [--rounds 6]

"before" is today's code with the three changes switched off, each the old code itself:
- the thumbnail is made by ``nutrilearn/vision/thumbnails.py`` as of ``--baseline`` (read
  from git and loaded as its own module): a box filter over the full photo;
- the backbone is given normalised float batches (``forward(normalise(stack))``) instead of
  uint8 crops normalised photo by photo into each interpreter's buffer;
- BLAS keeps its default threads (no ``one_blas_thread``).

Per round and arm: ``Analyzer.analyze`` of 256 food10 photos in chunks of 32 (photos/s and
process CPU ms a photo); ``_prepare`` alone on this thread (decode, crop, statistics,
thumbnail: CPU ms a photo); one photo decode + preprocess + forward (median ms, as in
bench_predict.py). Labels must be the same in both arms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def old_module(rev: str, path: str, name: str) -> types.ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


class FloatOnly:
    """The backbone as before: only ``forward`` on normalised float batches."""

    def __init__(self, backbone):
        self.inner, self.kind = backbone, backbone.kind

    def forward(self, x):
        return self.inner.forward(x)


@contextlib.contextmanager
def before(old_thumbnails):
    import nutrilearn.pipeline as pipeline

    saved = pipeline.make_thumbnail, pipeline.one_blas_thread
    pipeline.make_thumbnail, pipeline.one_blas_thread = old_thumbnails.make_thumbnail, contextlib.nullcontext
    try:
        yield
    finally:
        pipeline.make_thumbnail, pipeline.one_blas_thread = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--photos", type=int, default=256)
    ap.add_argument("--baseline", default="f41b49a", help="git revision of the old thumbnails.py")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
    from nutrilearn.serving import load_classifier
    from nutrilearn.vision.classifier import FoodClassifier
    from nutrilearn.vision.images import crop_and_resize, decode_image

    files = sorted(FOOD10.glob("test/*/*.jpg"))
    if not files:
        raise SystemExit(f"needs real photos at {FOOD10}")
    items = [Photo(f.name, f.read_bytes()) for f in (files * 2)[: args.photos]]
    one = sorted(FOOD10.glob("test/breakfast_burrito/*.jpg"))[0].read_bytes()
    settings = Settings.from_env()
    new_clf = load_classifier(settings, runtime="litert")
    old_clf = FoodClassifier(FloatOnly(new_clf.backbone), new_clf.head)
    old_thumbnails = old_module(args.baseline, "nutrilearn/vision/thumbnails.py", "thumbnails_before")
    arms = {"before": (Analyzer(old_clf, ModelInfo(), settings), lambda: before(old_thumbnails), old_clf),
            "after": (Analyzer(new_clf, ModelInfo(), settings), contextlib.nullcontext, new_clf)}

    def single(clf) -> float:
        samples = []
        for _ in range(23):
            t0 = time.perf_counter()
            clf.predict(crop_and_resize(decode_image(one, 10**8, 10**8).image)[None])
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples[3:])

    out: dict = {"load_before": os.getloadavg(), "rounds": []}
    print(f"load average {os.getloadavg()}", flush=True)
    labels = {}
    for name, (analyzer, ctx, _) in arms.items():  # warm-up: workers, plans, BLAS
        with ctx():
            labels[name] = [r.label for r in analyzer.analyze(items, user="bench", batch_size=32)]
    assert labels["before"] == labels["after"], "labels differ"
    for r in range(args.rounds):
        row = {}
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            analyzer, ctx, clf = arms[name]
            with ctx():
                t0, c0 = time.perf_counter(), time.process_time()
                records = analyzer.analyze(items, user="bench", batch_size=32)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                assert [x.label for x in records] == labels["after"]
                c1 = time.thread_time()
                analyzer._prepare(items[:64], [None] * 64, "bench", "api")
                prepare = (time.thread_time() - c1) * 1000 / 64
                single_ms = single(clf)
            row[name] = {"photos_per_s": len(items) / wall, "cpu_ms_per_photo": cpu * 1000 / len(items),
                         "prepare_cpu_ms": prepare, "one_photo_ms": single_ms}
        out["rounds"].append(row)
        print(f"round {r}: " + "; ".join(f"{n} " + ", ".join(f"{k} {v:.2f}" for k, v in m.items())
                                        for n, m in row.items()), flush=True)
    out["load_after"] = os.getloadavg()
    summary = {}
    for key in ("photos_per_s", "cpu_ms_per_photo", "prepare_cpu_ms", "one_photo_ms"):
        ratios = [row["after"][key] / row["before"][key] for row in out["rounds"]]
        summary[key] = {"before": statistics.median(row["before"][key] for row in out["rounds"]),
                        "after": statistics.median(row["after"][key] for row in out["rounds"]),
                        "after_over_before": statistics.median(ratios), "ratios": ratios}
        print(f"{key}: before {summary[key]['before']:.2f}, after {summary[key]['after']:.2f}; after/before median "
              f"{summary[key]['after_over_before']:.3f} (rounds {', '.join(f'{x:.2f}' for x in ratios)})")
    out["summary"] = summary
    print(f"load average after {out['load_after']}; labels the same on {len(items)} photos")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
