"""Poison bench: does one bad record hold up the good ones?

10,000 good prediction records go through a real ``PredictionLogger`` (default batching:
500 records or 30 s) into a sqlite MLflow store, twice in one process: once clean (the
baseline), once with poisoned rows in the middle that got into the spool unchecked (a
row from an older version, a damaged page: ``submit`` itself refuses invalid records, so
they are appended to the spool directly). For every good record it measures the delay
from ``submit`` returning to its batch being in MLflow, and counts the records that
reached MLflow (read back from the Parquet artifacts, no reader involved).

Bar (issue 13): zero good records lost, none delayed past one batch age (30 s).

    .venv/bin/python bench/bench_poison.py [--n 10000] [--poison 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(n: int, poison: int, rate_per_s: float, root: Path) -> dict:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger, prediction_group
    from nutrilearn.tracking.synthetic import make_record

    exp = f"bench-poison-{uuid.uuid4().hex[:8]}"
    os.environ["NUTRILEARN_PREDICTIONS_EXPERIMENT"] = exp
    os.environ["NUTRILEARN_SPOOL_DIR"] = str(root / exp)
    settings = Settings.from_env()
    logger = PredictionLogger(settings)
    submitted: dict[str, float] = {}
    written: dict[str, float] = {}
    real_after = logger._after_write

    def after(batch):
        real_after(batch)
        now = time.monotonic()
        for row in batch.rows:
            written[row.request_id] = now

    logger._after_write = after
    grp = None
    for i in range(n):
        rec = make_record(i, error=False)
        grp = grp or prediction_group(rec)
        logger.submit(rec)
        submitted[rec.request_id] = time.monotonic()
        if poison and i == n // 2:
            for k in range(poison):
                bad = make_record(10**7 + k, error=False)
                bad.top5_probs = ["not", "numbers"]  # passes JSON, fails the record checks
                logger.spool.append("predictions", grp, bad.request_id, bad.to_json())
        time.sleep(1.0 / rate_per_s)
    t_end = time.monotonic()
    flushed = logger.flush(timeout=300)
    dead = logger.dead_letters()
    logger.close()
    delays = [written[rid] - t for rid, t in submitted.items() if rid in written]
    in_mlflow = _records_in_mlflow(settings)
    return {
        "records": n, "poisoned_rows": poison, "flushed": flushed,
        "good_in_mlflow": len(set(submitted) & in_mlflow), "lost": len(set(submitted) - in_mlflow),
        "dead_letter_records": sum(d.n for d in dead),
        "delay_s_median": round(statistics.median(delays), 3) if delays else None,
        "delay_s_max": round(max(delays), 3) if delays else None,
        "written_by_flusher_before_final_flush": sum(t <= t_end for t in written.values()),
        "batch_max_age_s": settings.batch_max_age_s,
    }


def _records_in_mlflow(settings) -> set[str]:
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    from nutrilearn.tracking.store import local_artifact_dir

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name(settings.predictions_experiment)
    ids: set[str] = set()
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=10_000):
        path = local_artifact_dir(r.info.artifact_uri) / "predictions.parquet"  # a local sqlite store
        ids.update(pq.read_table(path, columns=["request_id"]).column(0).to_pylist())
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--poison", type=int, default=1)
    ap.add_argument("--rate", type=float, default=500.0, help="records per second submitted")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nutrilearn-poison-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ["NUTRILEARN_HOME"] = tmp
        print(f"load: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        clean = run(args.n, 0, args.rate, Path(tmp))
        poisoned = run(args.n, args.poison, args.rate, Path(tmp))
    ok = poisoned["lost"] == 0 and poisoned["delay_s_max"] <= poisoned["batch_max_age_s"] \
        and poisoned["dead_letter_records"] == args.poison
    out = {"clean": clean, "poisoned": poisoned,
           "max_delay_ratio_poisoned_vs_clean": round(poisoned["delay_s_max"] / clean["delay_s_max"], 2),
           "pass": ok}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name in ("clean", "poisoned"):
            r = out[name]
            print(f"{name:9s} lost {r['lost']} of {r['records']}, set aside {r['dead_letter_records']}, "
                  f"delay median {r['delay_s_median']} s, max {r['delay_s_max']} s "
                  f"(bar: {r['batch_max_age_s']:g} s)")
        print(f"max delay poisoned / clean: {out['max_delay_ratio_poisoned_vs_clean']}x -> "
              f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
