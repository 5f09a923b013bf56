"""Load and faults on the real prediction path (model + spool + MLflow), with exactly-once checks.

Run:  .venv/bin/python bench/bench_load.py [--threads 8] [--requests 500] [--outage-s 20]

1. Concurrency: THREADS threads each send REQUESTS one-photo requests through the serving
   analyzer and the PredictionLogger (local sqlite store). Then every request id must be
   read back exactly once. Reports throughput and latency percentiles.
2. Tracking server killed mid-traffic: a real `mlflow server` on 127.0.0.1 is SIGKILLed
   while two threads keep predicting, and started again OUTAGE_S later. Reports latency
   before/during the outage (the app kept answering) and records lost (must be 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FOOD10 = ROOT.parent / "shared" / "data" / "food10"


def _env(home: Path, **extra: str) -> None:
    os.environ.update({"NUTRILEARN_HOME": str(home), "NUTRILEARN_MODELS_DIR": str(ROOT / "models"),
                       "NUTRILEARN_SPOOL_DIR": str(home / "spool"), **extra})
    os.environ.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in extra else None


def _photos():
    from nutrilearn.pipeline import Photo

    files = sorted(FOOD10.glob("test/*/*.jpg"))
    if not files:
        raise SystemExit(f"needs real photos at {FOOD10}")
    return [Photo(f.name, f.read_bytes()) for f in files]


def _traffic(analyzer, photos, n_threads: int, per_thread: int, stop: threading.Event | None = None):
    """Each thread sends one-photo requests; returns [(t_start, latency_ms, request_id)]."""
    out: list[tuple[float, float, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(per_thread):
                if stop is not None and stop.is_set():
                    return
                photo = photos[(k * per_thread + i) % len(photos)]
                t0 = time.perf_counter()
                (rec,) = analyzer.analyze([photo], user=f"load{k}", source="api")
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    out.append((t0, ms, rec.request_id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def _read_back(settings) -> "pd.DataFrame":  # noqa: F821
    from nutrilearn.tracking.reader import PredictionReader

    return PredictionReader(settings).predictions(include_pending=False)


def concurrency(classifier, n_threads: int, per_thread: int) -> dict:
    from nutrilearn.config import Settings
    from nutrilearn.serving import build_analyzer, prediction_logger

    home = Path(tempfile.mkdtemp(prefix="nl-load-"))
    _env(home, NUTRILEARN_BATCH_MAX_AGE_S="2")
    settings = Settings.from_env()
    logger = prediction_logger(settings)
    analyzer = build_analyzer(settings, classifier, sink=logger)
    photos = _photos()
    analyzer.analyze(photos[:2], user="warmup", source="api")
    t0 = time.perf_counter()
    sent = _traffic(analyzer, photos, n_threads, per_thread)
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    assert logger.flush(600), "flush did not finish"
    flush_s = time.perf_counter() - t1
    logger.close(10)
    df = _read_back(settings)
    ids = {rid for _, _, rid in sent}
    got = df[df["source"] == "api"]
    got = got[got["user"].str.startswith("load")]
    lat = np.array([ms for _, ms, _ in sent])
    return {"requests": len(sent), "seconds": elapsed, "rps": len(sent) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "flush_after_s": flush_s, "read_back": len(got), "unique": got["request_id"].nunique(),
            "missing": len(ids - set(got["request_id"])), "duplicates": len(got) - got["request_id"].nunique()}


def outage(classifier, outage_s: float) -> dict:
    from nutrilearn.config import Settings
    from nutrilearn.serving import build_analyzer
    from nutrilearn.tracking.logger import PredictionLogger
    from tests.tracking_fixtures import MlflowServer

    home = Path(tempfile.mkdtemp(prefix="nl-outage-"))
    server = MlflowServer(home, f"sqlite:///{home / 'server.db'}")
    server.start()
    _env(home, MLFLOW_TRACKING_URI=server.uri)
    settings = Settings.from_env()
    logger = PredictionLogger(settings, batch_max_records=50, batch_max_age_s=1.0, backoff_initial_s=0.5,
                              backoff_max_s=4.0)
    analyzer = build_analyzer(settings, classifier, sink=logger)
    photos = _photos()
    analyzer.analyze(photos[:2], user="warmup", source="api")
    stop = threading.Event()
    result: dict = {}
    box: list = []
    runner = threading.Thread(target=lambda: box.append(_traffic(analyzer, photos, 2, 10**9, stop)))
    runner.start()
    time.sleep(10)
    t_kill = time.perf_counter()
    server.stop()
    time.sleep(outage_s)
    t_back = time.perf_counter()
    server.start()
    time.sleep(10)
    stop.set()
    runner.join()
    sent = box[0]
    assert logger.flush(300), "flush after the outage did not finish"
    logger.close(10)
    df = _read_back(settings)
    server.stop()
    ids = {rid for _, _, rid in sent}
    got = df[df["request_id"].isin(ids)]
    before = [ms for t, ms, _ in sent if t < t_kill]
    during = [ms for t, ms, _ in sent if t_kill <= t < t_back]
    result.update(requests=len(sent), during_outage=len(during),
                  p50_before_ms=float(np.median(before)), p50_during_ms=float(np.median(during)),
                  p99_during_ms=float(np.percentile(during, 99)), missing=len(ids - set(got["request_id"])),
                  duplicates=len(got) - got["request_id"].nunique())
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--outage-s", type=float, default=20.0)
    args = ap.parse_args()
    from nutrilearn.config import Settings
    from nutrilearn.serving import load_classifier

    classifier = load_classifier(Settings.from_env())
    c = concurrency(classifier, args.threads, args.requests)
    print(f"concurrency {args.threads} x {args.requests}: {c['requests']} requests in {c['seconds']:.1f} s = "
          f"{c['rps']:.1f} req/s; latency p50 {c['p50_ms']:.0f} ms, p99 {c['p99_ms']:.0f} ms; "
          f"read back {c['read_back']} ({c['unique']} unique), missing {c['missing']}, duplicates {c['duplicates']}")
    o = outage(classifier, args.outage_s)
    print(f"tracking server killed for {args.outage_s:g} s mid-traffic: {o['requests']} requests "
          f"({o['during_outage']} during the outage); p50 before {o['p50_before_ms']:.0f} ms, during "
          f"{o['p50_during_ms']:.0f} ms (p99 {o['p99_during_ms']:.0f}); missing {o['missing']}, "
          f"duplicates {o['duplicates']}")
    return 0 if (c["missing"] == c["duplicates"] == o["missing"] == o["duplicates"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
