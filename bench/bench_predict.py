"""Prediction speed, LiteRT (serving) against Keras (the old path) in the same run.

Run:  .venv/bin/python bench/bench_predict.py [--repeats 50] [--process-runs 3] [--json out.json]

Measures, each against the Keras path measured in the same process (these machines are
shared and noisy, so only same-run ratios mean much):

1. one photo, decode + preprocess + forward (median), plus ``model.predict`` as before;
2. LiteRT batch modes (per photo vs a resized input, 1 vs all threads), interleaved;
3. batches through the analyzer (decode of the next chunk overlapped with the model)
   against the same chunks decoded then predicted one after the other;
4. labels of every food10 test photo from both runtimes (must be the same);
5. ``nutrilearn predict`` as a whole process, one photo and 225 photos: wall time and peak
   RSS (VmHWM), in a home after ``setup`` (registry, @champion), tracking on; the
   detached hand-off flusher is waited for between runs so it never overlaps a timing;
6. app start to first prediction (new process, ``AppTest``, upload, answer shown).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"
NUTRILEARN = Path(sys.executable).with_name("nutrilearn")


def _test_files() -> list[Path]:
    files = sorted(FOOD10.glob("test/*/*.jpg"))
    if not files:
        raise SystemExit(f"needs real photos at {FOOD10}")
    return files


def _photos(n: int) -> list[bytes]:
    files = _test_files()
    return [files[i % len(files)].read_bytes() for i in range(n)]


def _stats(samples: list[float]) -> dict:
    import numpy as np

    return {"median_ms": statistics.median(samples), "p95_ms": float(np.percentile(samples, 95)), "n": len(samples)}


def single_photo(classifiers: dict, data: bytes, repeats: int) -> dict:
    """decode + preprocess + forward of one photo, runtimes interleaved round by round."""
    from nutrilearn.vision.images import crop_and_resize, decode_image, normalise

    def pipeline(clf):
        def run() -> None:
            pixels = crop_and_resize(decode_image(data, 10**8, 10**8).image)
            clf.predict(pixels[None])
        return run

    keras_model = classifiers["keras"].backbone.model

    def keras_predict() -> None:
        pixels = crop_and_resize(decode_image(data, 10**8, 10**8).image)
        keras_model.predict(normalise(pixels[None]), verbose=0)

    fns = {name: pipeline(clf) for name, clf in classifiers.items()} | {"keras model.predict": keras_predict}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(3):
            fn()  # warm-up (tracing, XNNPACK plans)
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
    out = {name: _stats(s) for name, s in samples.items()}
    out["keras_over_litert"] = out["keras"]["median_ms"] / out["litert"]["median_ms"]
    return out


def batch_modes(models_dir: Path, n: int, rounds: int) -> dict:
    """Forward passes only, photos/s, for each LiteRT batch mode and thread count (interleaved)."""
    import numpy as np

    from nutrilearn.vision.blas import cpu_threads
    from nutrilearn.vision.litert import BATCH_MODES, LiteRTBackbone
    from nutrilearn.vision.model_files import read_checked_tflite

    model = read_checked_tflite(models_dir)
    x = np.random.default_rng(0).uniform(-1, 1, (n, 224, 224, 3)).astype(np.float32)
    threads = sorted({1, cpu_threads()})
    backbones = {f"{mode}, {t} thread(s)": LiteRTBackbone(model, t, mode) for mode in BATCH_MODES for t in threads}
    for b in backbones.values():
        b.forward(x)  # warm-up: plans for this batch size
    rates: dict[str, list[float]] = {name: [] for name in backbones}
    for _ in range(rounds):
        for name, b in backbones.items():
            t0 = time.perf_counter()
            b.forward(x)
            rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def _sequential(analyzer, items, batch_size: int):
    """Baseline: decode a chunk, then run the model on it, one after the other."""
    out = []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        out.extend(analyzer._predict(analyzer._prepare(chunk, [None] * len(chunk), "bench", "api")))
    return out


def batch_throughput(analyzers: dict, photos: list[bytes], batch_size: int) -> dict:
    from nutrilearn.pipeline import Photo

    items = [Photo(f"{i}.jpg", d) for i, d in enumerate(photos)]
    out = {}
    for name, analyzer in analyzers.items():
        analyzer.analyze(items[:batch_size], user="bench", batch_size=batch_size)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        records = analyzer.analyze(items, user="bench", batch_size=batch_size)
        overlapped, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        baseline = _sequential(analyzer, items, batch_size)
        sequential = time.perf_counter() - t1
        assert all(r.ok for r in records) and len(baseline) == len(records)
        # CPU seconds of this process (all threads) a photo: what bounds photos/s on free cores.
        out[name] = {"photos": len(items), "photos_per_s": len(items) / overlapped,
                     "sequential_photos_per_s": len(items) / sequential, "cpu_ms_per_photo": cpu * 1000 / len(items)}
    out["litert_over_keras"] = out["litert"]["photos_per_s"] / out["keras"]["photos_per_s"]
    return out


def same_labels(analyzers: dict) -> dict:
    """Every food10 test photo through both runtimes: labels must agree."""
    from nutrilearn.pipeline import Photo

    items = [Photo(p.name, p.read_bytes()) for p in _test_files()]
    runs = {name: a.analyze(items, user="bench", batch_size=32) for name, a in analyzers.items()}
    pairs = list(zip(runs["keras"], runs["litert"]))
    return {"photos": len(pairs), "same_label": sum(k.label == l.label for k, l in pairs),
            "same_top5": sum(k.top5_labels == l.top5_labels for k, l in pairs),
            "max_confidence_diff": max(abs((k.confidence or 0) - (l.confidence or 0)) for k, l in pairs)}


# -- whole processes ---------------------------------------------------------------------


def _bench_home() -> dict[str, str]:
    """A NUTRILEARN_HOME as after `nutrilearn setup` (registry, @champion, its head), own stores."""
    home = Path(tempfile.mkdtemp(prefix="nutrilearn-bench-predict-"))
    env = {**os.environ, "NUTRILEARN_HOME": str(home), "NUTRILEARN_MODELS_DIR": str(ROOT / "models")}
    for var in ("MLFLOW_TRACKING_URI", "NUTRILEARN_SPOOL_DIR", "DATABASE_URL", "NUTRILEARN_RUNTIME"):
        env.pop(var, None)
    subprocess.run([str(NUTRILEARN), "setup"], env=env, check=True, capture_output=True, timeout=600)
    return env


def _wait_for_handoff(env: dict[str, str]) -> None:
    with open(Path(env["NUTRILEARN_HOME"]) / "mlruns" / "spool" / "handoff.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fcntl.flock(fh, fcntl.LOCK_UN)


# Runs ``nutrilearn`` exactly as its console script does, then reports the process's peak
# RSS. (``wait4``'s ru_maxrss would not do: a child forked from this big process starts
# with its high-water mark, and exec keeps it. VmHWM belongs to the exec'd image alone.)
CLI = """
import sys
from nutrilearn.cli import main
rc = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_KB", hwm.split()[1], file=sys.stderr)
sys.exit(rc)
"""


def _timed_process(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one ``nutrilearn`` process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=env["NUTRILEARN_HOME"],
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"nutrilearn {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    peak_kb = next(line.split()[1] for line in done.stderr.splitlines()[::-1] if line.startswith("PEAK_KB"))
    return wall, int(peak_kb) / 1024.0, done.stdout


def whole_process(env: dict[str, str], photo: Path, folder: Path, runs: int) -> dict:
    """``nutrilearn predict`` of one photo and of a folder, LiteRT and Keras runs interleaved."""
    cases = {"one photo": ["predict", str(photo), "--json"],
             f"{len(list(folder.iterdir()))} photos": ["predict", str(folder), "--json"]}
    out: dict = {}
    for case, cmd in cases.items():
        got: dict[str, dict[str, list]] = {rt: {"wall_s": [], "peak_mb": [], "labels": []} for rt in ("litert", "keras")}
        for _ in range(runs):
            for runtime in ("litert", "keras"):
                wall, peak, stdout = _timed_process(cmd, {**env, "NUTRILEARN_RUNTIME": runtime})
                _wait_for_handoff(env)  # its MLflow write never overlaps the next timing
                got[runtime]["wall_s"].append(wall)
                got[runtime]["peak_mb"].append(peak)
                got[runtime]["labels"] = [json.loads(line)["label"] for line in stdout.splitlines()]
        out[case] = {rt: {"median_wall_s": statistics.median(v["wall_s"]), "max_peak_mb": max(v["peak_mb"]),
                          "runs": v["wall_s"]} for rt, v in got.items()}
        out[case]["same_labels"] = got["litert"]["labels"] == got["keras"]["labels"]
        out[case]["keras_over_litert"] = out[case]["keras"]["median_wall_s"] / out[case]["litert"]["median_wall_s"]
    return out


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
    print(time.time(), at.subheader[0].value, flush=True)  # the answer is on the page now
    """
)


def app_start_to_first_prediction(photo: Path, env: dict[str, str], runs: int) -> dict:
    """From launching the process to the answer on the page (the child stamps the clock when
    it is shown); the whole process, with its exit (the logger's last flush to MLflow), apart."""
    out = {}
    samples: dict[str, list[float]] = {"litert": [], "keras": []}
    whole: dict[str, list[float]] = {"litert": [], "keras": []}
    answers = {}
    for _ in range(runs):
        for runtime in samples:
            launched, t0 = time.time(), time.perf_counter()
            done = subprocess.run([sys.executable, "-c", APP_START, str(photo)], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300, env={**env, "NUTRILEARN_RUNTIME": runtime})
            whole[runtime].append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            shown, answers[runtime] = done.stdout.strip().splitlines()[-1].split(" ", 1)
            samples[runtime].append(float(shown) - launched)
    for runtime, s in samples.items():
        out[runtime] = {"median_wall_s": statistics.median(s), "runs": s, "answer": answers[runtime],
                        "median_whole_process_s": statistics.median(whole[runtime])}
    out["keras_over_litert"] = out["keras"]["median_wall_s"] / out["litert"]["median_wall_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--batch-photos", type=int, default=256)
    ap.add_argument("--process-runs", type=int, default=3)
    ap.add_argument("--folder-photos", type=int, default=225)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    results: dict = {"load_before": os.getloadavg()}

    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo
    from nutrilearn.serving import load_classifier
    from nutrilearn.vision.blas import cpu_threads

    settings = Settings.from_env()
    classifiers = {rt: load_classifier(settings, runtime=rt) for rt in ("litert", "keras")}
    photo = sorted(FOOD10.glob("test/breakfast_burrito/*.jpg"))[0]
    print(f"load average {os.getloadavg()[0]:.1f}; LiteRT threads {cpu_threads()}", flush=True)

    single = results["single"] = single_photo(classifiers, photo.read_bytes(), args.repeats)
    print(f"one photo, decode+preprocess+forward, median of {args.repeats}: LiteRT {single['litert']['median_ms']:.1f} ms "
          f"(p95 {single['litert']['p95_ms']:.1f}); Keras tf.function {single['keras']['median_ms']:.1f} ms "
          f"(p95 {single['keras']['p95_ms']:.1f}) -> {single['keras_over_litert']:.1f}x; "
          f"Keras model.predict {single['keras model.predict']['median_ms']:.1f} ms", flush=True)

    modes = results["batch_modes"] = batch_modes(settings.models_dir, 32, 5)
    print("LiteRT forward passes only, 32 photos, median of 5 rounds: "
          + "; ".join(f"{name} {rate:.1f} photos/s" for name, rate in modes.items()), flush=True)

    analyzers = {rt: Analyzer(clf, ModelInfo(), settings) for rt, clf in classifiers.items()}
    batches = results["batches"] = batch_throughput(analyzers, _photos(args.batch_photos), 32)
    for rt in ("litert", "keras"):
        b = batches[rt]
        print(f"batches of 32, {b['photos']} photos, {rt}: {b['photos_per_s']:.1f} photos/s overlapped, "
              f"{b['sequential_photos_per_s']:.1f} sequential -> {b['photos_per_s'] / b['sequential_photos_per_s']:.2f}x; "
              f"{b['cpu_ms_per_photo']:.1f} ms CPU a photo (at most {1000 * cpu_threads() / b['cpu_ms_per_photo']:.0f} "
              f"photos/s on {cpu_threads()} free cores)", flush=True)
    print(f"batches: LiteRT / Keras = {batches['litert_over_keras']:.1f}x", flush=True)

    labels = results["labels"] = same_labels(analyzers)
    print(f"food10 test photos: same label {labels['same_label']}/{labels['photos']}, same top-5 "
          f"{labels['same_top5']}/{labels['photos']}, max confidence difference {labels['max_confidence_diff']:.1e}",
          flush=True)
    del classifiers, analyzers

    env = _bench_home()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, f in enumerate(_test_files()[: args.folder_photos]):
            (folder / f"{i:03d}-{f.name}").symlink_to(f)
        proc = results["process"] = whole_process(env, photo, folder, args.process_runs)
    for case, r in proc.items():
        print(f"nutrilearn predict, {case}, whole process (median of {args.process_runs}): "
              f"LiteRT {r['litert']['median_wall_s']:.2f} s, {r['litert']['max_peak_mb']:.0f} MB peak; "
              f"Keras {r['keras']['median_wall_s']:.2f} s, {r['keras']['max_peak_mb']:.0f} MB -> "
              f"{r['keras_over_litert']:.1f}x; same labels: {r['same_labels']}", flush=True)

    start = results["app_start"] = app_start_to_first_prediction(photo, env, args.process_runs)
    print(f"app start to first prediction (new process, AppTest, median of {args.process_runs}): "
          f"LiteRT {start['litert']['median_wall_s']:.1f} s, Keras {start['keras']['median_wall_s']:.1f} s -> "
          f"{start['keras_over_litert']:.1f}x; answers: {start['litert']['answer']} / {start['keras']['answer']}; "
          f"whole process with its exit: LiteRT {start['litert']['median_whole_process_s']:.1f} s, "
          f"Keras {start['keras']['median_whole_process_s']:.1f} s", flush=True)
    results["load_after"] = os.getloadavg()
    print(f"load average after: {results['load_after'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
