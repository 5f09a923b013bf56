"""PredictionLogger against a real sqlite MLflow store: batches, runs, failures, idempotency."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

from nutrilearn.tracking import store
from nutrilearn.tracking.reader import PredictionReader
from tracking_fixtures import free_port, make_feedback, make_record, raw_rows

# Fixtures (mlflow_db, tracking, loggers) as a plugin: one session store shared by every module.
pytest_plugins = ["tracking_fixtures"]


def _runs(settings, kind="predictions", status="FINISHED"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name(settings.predictions_experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [r for r in runs if r.data.tags.get(store.TAG_KIND) == kind and (status is None or r.info.status == status)]


def test_submit_spools_and_flush_writes_one_run_per_batch(tracking, loggers):
    logger = loggers(tracking, batch_max_records=10, batch_max_age_s=3600)
    records = [make_record(i) for i in range(25)]
    started = time.perf_counter()
    for rec in records:
        assert logger.submit(rec) is True
    assert (time.perf_counter() - started) / 25 < 0.05  # returns at once (a spool commit)
    assert logger.spool_pending() == 25
    assert logger.flush(timeout=60)
    assert logger.spool_pending() == 0
    runs = sorted(_runs(tracking), key=lambda r: r.data.metrics["count"])
    assert [r.data.metrics["count"] for r in runs] == [5, 10, 10]
    run = runs[-1]
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["model_version"] == "1" and tags["model_alias"] == "champion"
    assert tags["source"] == "app" and tags["replayed"] == "false"
    assert re.fullmatch(r"[0-9a-f]{32}", tags[store.TAG_BATCH_ID])
    assert re.fullmatch(r"predictions 2026-11-27 \d\d:\d\d-\d\d:\d\d \(10\)", run.info.run_name)
    assert {"count", "errors", "error_rate", "mean_confidence", "p95_latency_ms", "p50_latency_ms"} <= set(metrics)
    batch = [r for r in records if r.request_id in set(PredictionReader(tracking).predictions()["request_id"])]
    assert len(batch) == 25
    errors = sum(not r.ok for r in records)
    assert sum(r.data.metrics["errors"] for r in runs) == errors == 1
    status = logger.status()
    assert status.flushed_records == 25 and status.reachable and status.pending == 0


def test_rows_in_the_artifact_equal_what_was_submitted(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100)
    records = [make_record(i) for i in range(20)]
    for rec in records:
        logger.submit(rec)
    assert logger.flush(timeout=60)
    df = PredictionReader(tracking, include_spool=False).predictions()
    by_id = df.set_index("request_id")
    for rec in records:
        row = by_id.loc[rec.request_id]
        assert row["timestamp"] == pd.Timestamp(rec.timestamp)
        assert row["label"] == rec.label or (rec.label is None and pd.isna(row["label"]))
        assert row["embedding"] == rec.embedding
        assert list(row["top5_labels"]) == rec.top5_labels


def test_age_limit_flushes_in_the_background(tracking, loggers):
    logger = loggers(tracking, batch_max_records=1000, batch_max_age_s=0.2)
    for i in range(3):
        logger.submit(make_record(i))
    deadline = time.monotonic() + 60
    while logger.spool_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logger.spool_pending() == 0
    assert [r.data.metrics["count"] for r in _runs(tracking)] == [3]


def test_batches_split_by_model_version_and_source_and_feedback_has_its_own_run(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100)
    recs = [make_record(0, model_version="1"), make_record(1, model_version="2"),
            make_record(2, model_version="2", source="replay")]
    for rec in recs:
        logger.submit(rec)
    logger.submit_feedback(make_feedback(recs[0], label="bagel"))
    assert logger.flush(timeout=60)
    tags = sorted((r.data.tags["model_version"], r.data.tags["source"], r.data.tags["replayed"])
                  for r in _runs(tracking))
    assert tags == [("1", "app", "false"), ("2", "app", "false"), ("2", "replay", "true")]
    (fb_run,) = _runs(tracking, kind="feedback")
    assert fb_run.data.metrics["corrected"] == 1
    assert fb_run.info.run_name.startswith("feedback ")


def test_unreachable_server_keeps_records_and_backs_off(tracking, loggers):
    dead = f"http://127.0.0.1:{free_port()}"
    logger = loggers(tracking, tracking_uri=dead, batch_max_records=5, batch_max_age_s=0.05)
    for i in range(12):
        logger.submit(make_record(i))
    mlflow_calls = []
    real_ready = logger.writer._ready
    logger.writer._ready = lambda: (mlflow_calls.append(1), real_ready())[1]
    assert logger.flush(timeout=600) is False  # gives up after the probe, long before the timeout ...
    assert not mlflow_calls  # ... without ever sitting in MLflow's own retries
    logger.writer._ready = real_ready
    status = logger.status()
    assert status.reachable is False and "unreachable" in status.last_error
    assert status.pending == 12 and not status.healthy
    time.sleep(0.3)
    assert logger.status().retry_in_s <= 0.6  # backoff capped by backoff_max_s
    logger.close(timeout=0)
    # a restart with MLflow back: what was left goes
    again = loggers(tracking, batch_max_records=5)
    assert again.flush(timeout=60)
    assert sorted(r.data.metrics["count"] for r in _runs(tracking)) == [2, 5, 5]


def test_restart_flushes_what_a_closed_logger_left(tracking, loggers):
    first = loggers(tracking, batch_max_records=100, batch_max_age_s=3600, start=False)
    ids = set()
    for i in range(7):
        rec = make_record(i)
        first.submit(rec)
        ids.add(rec.request_id)
    first.close(timeout=0)
    second = loggers(tracking, batch_max_records=100, batch_max_age_s=0.0)
    assert second.flush(timeout=60)
    assert set(raw_rows(tracking)) == ids


def test_crash_between_mlflow_write_and_spool_bookkeeping_does_not_duplicate(tracking, loggers, monkeypatch):
    logger = loggers(tracking, batch_max_records=4, start=False)
    for i in range(10):
        logger.submit(make_record(i))
    failures = []
    real = logger._after_write

    def crash_once(batch):
        if not failures:
            failures.append(batch.batch_id)
            raise OSError("disk full while completing the batch")
        real(batch)

    monkeypatch.setattr(logger, "_after_write", crash_once)
    logger.flush(timeout=30)  # first attempt: run written, bookkeeping fails
    assert failures and logger.spool_pending() > 0
    logger._next_try = 0
    assert logger.flush(timeout=60)  # retry: finds the FINISHED run, only completes
    ids = raw_rows(tracking)
    assert len(ids) == len(set(ids)) == 10
    assert sum(r.data.tags[store.TAG_BATCH_ID] == failures[0] for r in _runs(tracking, status=None)) == 1


def test_abandoned_batch_is_finished_by_the_next_process_without_duplicates(tracking, loggers):
    crashed = loggers(tracking, batch_max_records=5, start=False, lease_s=0.01)
    for i in range(5):
        crashed.submit(make_record(i))
    batch = crashed.spool.claim(crashed.owner, max_records=5, max_age_s=0, lease_s=0.01, force=True)
    crashed.writer.write(batch)  # ... and the process dies before spool.complete
    time.sleep(0.05)
    heir = loggers(tracking, batch_max_records=5)
    assert heir.flush(timeout=60)
    assert len(raw_rows(tracking)) == 5
    assert len(_runs(tracking, status=None)) == 1


def test_half_written_run_is_marked_failed_and_written_again(tracking, loggers):
    logger = loggers(tracking, batch_max_records=3, start=False, lease_s=0.01)
    for i in range(3):
        logger.submit(make_record(i))
    batch = logger.spool.claim(logger.owner, max_records=3, max_age_s=0, lease_s=0.01, force=True)
    client, exp_id = logger.writer._ready()
    partial = client.create_run(exp_id, tags={store.TAG_KIND: "predictions", store.TAG_BATCH_ID: batch.batch_id})
    assert logger.flush(timeout=60)
    statuses = sorted(r.info.status for r in _runs(tracking, status=None))
    assert statuses == ["FAILED", "FINISHED"]
    assert client.get_run(partial.info.run_id).info.status == "FAILED"
    assert len(PredictionReader(tracking).predictions()) == 3


def test_spool_failure_never_fails_the_prediction(tracking, loggers, monkeypatch):
    from nutrilearn.tracking.spool import SpoolError

    logger = loggers(tracking, batch_max_records=100, start=False)

    def broken(*a, **k):
        raise SpoolError("disk full")

    monkeypatch.setattr(logger.spool, "append", broken)
    assert logger.submit(make_record(0)) is False
    assert logger.status().unspooled == 1
    monkeypatch.undo()
    assert logger.flush(timeout=60)
    assert len(raw_rows(tracking)) == 1


@pytest.mark.parametrize("uri", ["sqlite:///x/mlruns/mlflow.db"])
def test_artifact_location_beside_sqlite_store(tracking, uri):
    default = f"sqlite:///{tracking.home / 'mlruns' / 'mlflow.db'}"
    assert store.artifact_location(tracking, default) == tracking.artifact_root.resolve().as_uri()
    assert store.artifact_location(tracking, "http://127.0.0.1:5000") is None
    assert store.artifact_location(tracking, uri).endswith("/mlruns/artifacts")
