"""Tracking bench: what logging adds to a prediction, and what reading it back costs.

Run on demand (not part of the test suite); everything lives in a temporary directory:

    .venv/bin/python bench/bench_tracking.py                    # the full run (~10 min)
    .venv/bin/python bench/bench_tracking.py --per-prediction-runs 500 --read-records 20000  # quick look

Measures, in one process and one store (sqlite, like the default):

1. ``PredictionLogger.submit``: per-call latency over a stream of records, with the
   background flusher writing 500-record batches to MLflow at the same time, for both
   spool modes (``group``: default, WAL fsync'd every 50 ms; ``full``: fsync per record;
   ``normal``: none);
2. the original design beside it: one synchronous MLflow run per prediction
   (``create_run`` + ``log_batch`` + ``set_terminated``), and the ratio; 1 and 2 run in
   interleaved rounds so that both see the same load on the shared machine;
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


def submit_block(logger, records, pause_s: float, latencies: list[float], during_flush: list[bool]) -> None:
    """Per-submit latency, and whether the flusher was writing a batch at that moment."""
    for rec in records:
        busy = logger._cycle_lock.locked()
        t0 = time.perf_counter()
        logger.submit(rec)
        latencies.append((time.perf_counter() - t0) * 1000)
        during_flush.append(busy or logger._cycle_lock.locked())
        time.sleep(pause_s)  # traffic, not a tight loop: the time a prediction takes


def sync_run(client, exp_id: str, rec) -> float:
    """The original design: one MLflow run per prediction, written before answering (ms)."""
    from mlflow.entities import Metric, Param, RunTag

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
    return (time.perf_counter() - t0) * 1000


def bench_write_path(settings, home: Path, client, n_submits: int, n_runs: int, pause_s: float, rounds: int = 10):
    """Sections 1 and 2 interleaved in rounds, so both see the same machine load."""
    from nutrilearn.tracking.logger import PredictionLogger
    from nutrilearn.tracking.synthetic import make_record

    modes = ("group", "full", "normal")
    loggers = {m: PredictionLogger(replace(settings, spool_sync=m, predictions_experiment=f"bench-submit-{m}",
                                           spool_dir=home / f"spool-{m}"), batch_max_records=500, batch_max_age_s=30)
               for m in modes}
    for logger in loggers.values():
        logger.flush(120)  # MLflow imported and the store open, as in a running app
    exp_id = client.create_experiment("per-prediction-runs")
    lat = {m: [] for m in modes}
    busy = {m: [] for m in modes}
    sync: list[float] = []
    i = 0
    for r in range(rounds):
        for m in modes:
            records = [make_record(k) for k in range(i, i + n_submits // rounds)]
            submit_block(loggers[m], records, pause_s, lat[m], busy[m])
        for k in range(n_runs // rounds):
            sync.append(sync_run(client, exp_id, make_record(i + k)))
        i += max(n_submits, n_runs) // rounds
        medians = ", ".join(f"{m} {statistics.median(lat[m]):.2f} ms" for m in modes)
        print(f"  round {r + 1}/{rounds}: submit medians {medians}; per-prediction run "
              f"{statistics.median(sync):.1f} ms; load {os.getloadavg()[0]:.1f}", flush=True)
    for m, logger in loggers.items():
        assert logger.flush(300), f"flush ({m}) failed"
        print(f"  {m}: the flusher wrote {logger.status().flushed_batches} batches", flush=True)
        logger.close()
    return lat, busy, exp_id, sync


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


_NUMBERING = {"writer": __import__("uuid").uuid4().hex, "seq": 0}


def write_batches(settings, start: int, n: int, batch: int = 500) -> None:
    """Log ``n`` predictions as batch runs, straight through the flusher's writer."""
    from nutrilearn.tracking.logger import prediction_group
    from nutrilearn.tracking.writer import BatchWriter
    from nutrilearn.tracking.spool import Batch, SpooledRow, WritePosition, batch_id_for
    from nutrilearn.tracking.store import artifact_location
    from nutrilearn.tracking.synthetic import make_record

    writer = BatchWriter(settings.tracking_uri, settings.predictions_experiment,
                         artifact_location(settings, settings.tracking_uri))
    for lo in range(start, start + n, batch):
        _NUMBERING["seq"] += 1
        recs = [make_record(i, error=False) for i in range(lo, min(lo + batch, start + n))]
        ids = [r.request_id for r in recs]
        grp = prediction_group(recs[0])
        rows = tuple(SpooledRow(k, r.request_id, r.to_json()) for k, r in enumerate(recs))
        seq = _NUMBERING["seq"]  # one writer numbering its runs in order, as a spool does
        writer.write(Batch(batch_id_for("predictions", grp, ids), "predictions", grp, rows),
                     WritePosition(_NUMBERING["writer"], seq, seq))


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
    colds = []
    for _ in range(3):  # a new reader each time: empty cache; MLflow imported, store open
        reader = PredictionReader(settings, include_spool=False)
        t0 = time.perf_counter()
        df = reader.predictions()
        colds.append(time.perf_counter() - t0)
        assert len(df) == n, len(df)
    out["cold"] = statistics.median(colds)
    out["cold_min"] = min(colds)
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
    ap.add_argument("--only-read", action="store_true", help="section 4 alone (to repeat it at a quieter time)")
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
        if args.only_read:
            return report_read(settings, args.read_records)
        floor = fsync_floor(home)
        print(f"0. the disk: one 900-byte append + fdatasync: {summary(floor)}", flush=True)
        print(f"1+2. {args.submits} submits per spool mode (flusher writing 500-record batches alongside) and "
              f"{args.per_prediction_runs} synchronous per-prediction MLflow runs, interleaved in 10 rounds", flush=True)
        lat, busy, exp_id, sync = bench_write_path(settings, home, client, args.submits, args.per_prediction_runs,
                                                   args.pause_ms / 1000)
        print(f"0. the disk again, after 1+2: {summary(fsync_floor(home))}", flush=True)
        for mode in ("group", "full", "normal"):
            print(f"1. submit, spool sync={mode}: {summary(lat[mode])}", flush=True)
            idle = [x for x, b in zip(lat[mode], busy[mode]) if not b]
            flushing = [x for x, b in zip(lat[mode], busy[mode]) if b]
            if idle and flushing:
                print(f"   flusher idle: {summary(idle)}\n   flusher writing: {summary(flushing)}", flush=True)
        print(f"2. one synchronous MLflow run per prediction: {summary(sync)}", flush=True)
        for mode in ("group", "full", "normal"):
            print(f"   ratio to submit ({mode}): medians {statistics.median(sync) / statistics.median(lat[mode]):.0f}x, "
                  f"p99 {pct(sync, 0.99) / pct(lat[mode], 0.99):.0f}x", flush=True)

        print(f"3. search_runs over {args.per_prediction_runs} per-prediction runs", flush=True)
        search = bench_search(client, exp_id, settings.tracking_uri)
        print(f"   MlflowClient.search_runs: {search['client']:.2f} s for {search['runs']} runs; "
              f"mlflow.search_runs -> DataFrame: {search['dataframe']:.2f} s", flush=True)

        return report_read(settings, args.read_records)


def report_read(settings, n: int) -> int:
    print(f"4. reader: {n} logged predictions", flush=True)
    read = bench_read(replace(settings, predictions_experiment="bench-read"), n)
    print(f"   cold (new reader, store open; median of 3): {read['cold']:.2f} s (best {read['cold_min']:.2f} s); cold in a new process incl. imports: "
          f"{read['cold_new_process']:.2f} s; refresh with nothing new: {read['warm_nothing_new']:.3f} s; "
          f"1,000 new: {read['incremental_1000']:.3f} s; load average now {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
