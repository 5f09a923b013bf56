"""Tracking bench: what logging adds to a prediction, and what reading it back costs.

Run on demand (not part of the test suite); everything lives in a temporary directory:

    .venv/bin/python bench/bench_tracking.py                    # the full run (~10 min)
    .venv/bin/python bench/bench_tracking.py --per-prediction-runs 500 --read-records 20000  # quick look

Measures, in one process and one store (sqlite, like the default):

1. ``PredictionLogger.submit``: per-call latency over a stream of records, with the
   background flusher writing 500-record batches to MLflow at the same time;
2. the original design beside it: one synchronous MLflow run per prediction
   (``create_run`` + ``log_batch`` + ``set_terminated``), and the ratio;
3. ``search_runs`` over those per-prediction runs (``MlflowClient`` and ``mlflow.search_runs``);
4. ``PredictionReader``: 100,000 logged predictions into pandas cold, then picking up 1,000 new.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.3f} ms, p99 {pct(ms, 0.99):.3f} ms, max {max(ms):.1f} ms (n={len(ms)})"


def fsync_floor(directory: Path, n: int = 300) -> list[float]:
    """What the disk charges for one small append + fdatasync right now (the floor under FULL)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 900)
            os.fdatasync(fd)
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        os.close(fd)
        path.unlink()


def bench_submit(settings, n: int, pause_s: float) -> tuple[list[float], list[bool]]:
    """Per-submit latency, and whether the flusher was writing a batch at that moment."""
    from nutrilearn.tracking.logger import PredictionLogger
    from nutrilearn.tracking.synthetic import make_record

    records = [make_record(i) for i in range(n)]
    logger = PredictionLogger(settings, batch_max_records=500, batch_max_age_s=30)
    logger.flush(120)  # MLflow imported and the store open, as in a running app
    latencies, during_flush = [], []
    for rec in records:
        busy = logger._cycle_lock.locked()
        t0 = time.perf_counter()
        logger.submit(rec)
        latencies.append((time.perf_counter() - t0) * 1000)
        during_flush.append(busy or logger._cycle_lock.locked())
        time.sleep(pause_s)  # traffic, not a tight loop: the time a prediction takes
    status = logger.status()
    assert logger.flush(300), "flush failed"
    logger.close()
    print(f"  flusher wrote {status.flushed_batches} batches while submitting", flush=True)
    return latencies, during_flush


def bench_sync_runs(client, n: int) -> tuple[str, list[float]]:
    """The original design: one MLflow run per prediction, written before answering."""
    from mlflow.entities import Metric, Param, RunTag

    from nutrilearn.tracking.synthetic import make_record

    exp_id = client.create_experiment("per-prediction-runs")
    latencies = []
    for i in range(n):
        rec = make_record(i)
        t0 = time.perf_counter()
        run = client.create_run(exp_id, tags={"model_version": rec.model_version, "user": rec.user,
                                               "status": rec.status, "label": str(rec.label)})
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(getattr(rec, k) or 0.0), now, 0)
                   for k in ("confidence", "decode_ms", "preprocess_ms", "inference_ms", "total_ms",
                             "brightness", "contrast", "saturation", "sharpness", "aspect")]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("request_id", rec.request_id), Param("filename", rec.filename)],
                         tags=[RunTag("top5", ",".join(rec.top5_labels))])
        client.set_terminated(run.info.run_id, "FINISHED")
        latencies.append((time.perf_counter() - t0) * 1000)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} per-prediction runs ({statistics.median(latencies):.1f} ms median)", flush=True)
    return exp_id, latencies


def bench_search(client, exp_id: str, tracking_uri: str) -> dict[str, float]:
    import mlflow

    out = {}
    t0 = time.perf_counter()
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=50_000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    out["client"] = time.perf_counter() - t0
    out["runs"] = len(runs)
    mlflow.set_tracking_uri(tracking_uri)
    t0 = time.perf_counter()
    df = mlflow.search_runs(experiment_ids=[exp_id], max_results=100_000)
    out["dataframe"] = time.perf_counter() - t0
    assert len(df) == len(runs)
    return out


def write_batches(settings, start: int, n: int, batch: int = 500) -> None:
    """Log ``n`` predictions as batch runs, straight through the flusher's writer."""
    from nutrilearn.tracking.logger import BatchWriter, prediction_group
    from nutrilearn.tracking.spool import Batch, SpooledRow, batch_id_for
    from nutrilearn.tracking.store import artifact_location
    from nutrilearn.tracking.synthetic import make_record

    writer = BatchWriter(settings.tracking_uri, settings.predictions_experiment,
                         artifact_location(settings, settings.tracking_uri))
    for lo in range(start, start + n, batch):
        recs = [make_record(i, error=False) for i in range(lo, min(lo + batch, start + n))]
        ids = [r.request_id for r in recs]
        grp = prediction_group(recs[0])
        rows = tuple(SpooledRow(k, r.request_id, r.to_json()) for k, r in enumerate(recs))
        writer.write(Batch(batch_id_for("predictions", grp, ids), "predictions", grp, rows))


COLD_SCRIPT = """
import time, sys
t0 = time.perf_counter()
from nutrilearn.tracking.reader import PredictionReader
r = PredictionReader(include_spool=False, experiment_name="bench-read")
df = r.predictions()
print(len(df), time.perf_counter() - t0)
"""


def bench_read(settings, n: int) -> dict[str, float]:
    from nutrilearn.tracking.reader import PredictionReader

    t0 = time.perf_counter()
    write_batches(settings, 0, n)
    print(f"  wrote {n} predictions as {n // 500} batch runs in {time.perf_counter() - t0:.1f} s", flush=True)
    out = {}
    reader = PredictionReader(settings, include_spool=False)  # empty cache; MLflow imported, store open
    t0 = time.perf_counter()
    df = reader.predictions()
    out["cold"] = time.perf_counter() - t0
    assert len(df) == n, len(df)
    proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT], capture_output=True, text=True, check=True,
                          env=dict(os.environ), cwd=ROOT)
    rows, seconds = proc.stdout.split()
    assert int(rows) == n
    out["cold_new_process"] = float(seconds)
    t0 = time.perf_counter()
    reader.predictions()
    out["warm_nothing_new"] = time.perf_counter() - t0
    write_batches(settings, n, 1000)
    t0 = time.perf_counter()
    df = reader.predictions()
    out["incremental_1000"] = time.perf_counter() - t0
    assert len(df) == n + 1000
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--submits", type=int, default=5000)
    ap.add_argument("--per-prediction-runs", type=int, default=10_000)
    ap.add_argument("--read-records", type=int, default=100_000)
    ap.add_argument("--pause-ms", type=float, default=2.0, help="time between submits (default 2)")
    ap.add_argument("--dir", type=Path, help="keep the stores here (default: a temporary directory)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        home = (args.dir or Path(tmp)).resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ.update(NUTRILEARN_HOME=str(home), NUTRILEARN_SPOOL_DIR=str(home / "mlruns" / "spool"))
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("NUTRILEARN_PREDICTIONS_EXPERIMENT", None)
        from nutrilearn.config import Settings
        from nutrilearn.tracking.store import make_client

        settings = Settings.from_env()
        print(f"store: {settings.tracking_uri}", flush=True)
        client = make_client(settings.tracking_uri)
        client.search_experiments()

        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        floor = fsync_floor(home)
        print(f"0. the disk: one 900-byte append + fdatasync: {summary(floor)}", flush=True)
        submits = {}
        for sync in ("full", "normal"):
            print(f"1. submit, spool sync={sync}, flusher writing 500-record batches alongside", flush=True)
            exp_settings = replace(settings, spool_sync=sync, predictions_experiment=f"bench-submit-{sync}",
                                   spool_dir=home / f"spool-{sync}")
            lat, busy = bench_submit(exp_settings, args.submits, args.pause_ms / 1000)
            submits[sync] = lat
            print(f"   all: {summary(lat)}", flush=True)
            quiet = [x for x, b in zip(lat, busy) if not b]
            flushing = [x for x, b in zip(lat, busy) if b]
            if quiet and flushing:
                print(f"   flusher idle: {summary(quiet)}\n   flusher writing: {summary(flushing)}", flush=True)
        submit = submits["full"]

        print("2. one synchronous MLflow run per prediction", flush=True)
        exp_id, sync = bench_sync_runs(client, args.per_prediction_runs)
        print("   " + summary(sync), flush=True)
        ratio = statistics.median(sync) / statistics.median(submit)
        print(f"   ratio of medians: {ratio:.0f}x; p99: {pct(sync, 0.99) / pct(submit, 0.99):.0f}x", flush=True)

        print(f"3. search_runs over {args.per_prediction_runs} per-prediction runs", flush=True)
        search = bench_search(client, exp_id, settings.tracking_uri)
        print(f"   MlflowClient.search_runs: {search['client']:.2f} s for {search['runs']} runs; "
              f"mlflow.search_runs -> DataFrame: {search['dataframe']:.2f} s", flush=True)

        print(f"4. reader: {args.read_records} logged predictions", flush=True)
        read = bench_read(replace(settings, predictions_experiment="bench-read"), args.read_records)
        print(f"   cold (new reader, store open): {read['cold']:.2f} s; cold in a new process incl. imports: "
              f"{read['cold_new_process']:.2f} s; refresh with nothing new: {read['warm_nothing_new']:.3f} s; "
              f"1,000 new: {read['incremental_1000']:.3f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
