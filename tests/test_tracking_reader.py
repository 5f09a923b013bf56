"""PredictionReader: columns and types, filters, incremental refresh, spool rows, dedup."""

from __future__ import annotations

import time
from datetime import timedelta

import pandas as pd
import pytest

from nutrilearn.tracking.reader import PredictionReader
from nutrilearn.tracking.records import ROW_FIELDS, FEEDBACK_FIELDS
from nutrilearn.tracking import store
from nutrilearn.tracking.spool import new_owner
from tracking_fixtures import T0, free_port, make_feedback, make_record, raw_rows

# Fixtures (mlflow_db, tracking, loggers) as a plugin: one session store shared by every module.
pytest_plugins = ["tracking_fixtures"]


@pytest.fixture
def logged(tracking, loggers):
    """30 predictions over 30 s: users analyst0-2, versions 1 and 2, 5 replayed; 6 runs."""
    logger = loggers(tracking, batch_max_records=8, start=False)
    records = []
    for i in range(30):
        rec = make_record(i, model_version="2" if i >= 20 else "1", source="replay" if i % 6 == 5 else "app")
        logger.submit(rec)
        records.append(rec)
    assert logger.flush(timeout=60)
    return logger, records


def test_columns_types_and_order(tracking, logged):
    df = PredictionReader(tracking).predictions()
    assert tuple(df.columns) == ROW_FIELDS
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert df["timestamp"].is_monotonic_increasing and len(df) == 30
    assert df["request_id"].is_unique


def test_filters(tracking, logged):
    _, records = logged
    reader = PredictionReader(tracking)
    assert len(reader.predictions(start=T0 + timedelta(seconds=10), end=T0 + timedelta(seconds=20))) == 10
    # naive times are UTC; strings work too
    assert len(reader.predictions(start="2026-11-27 09:00:25")) == 5
    assert set(reader.predictions(model_version="2")["model_version"]) == {"2"}
    assert len(reader.predictions(model_version=["1", "2"])) == 30
    assert set(reader.predictions(user="analyst1")["user"]) == {"analyst1"}
    assert len(reader.predictions(user=["analyst0", "analyst1"])) == 20
    live = reader.predictions(include_replayed=False)
    assert len(live) == 25 and "replay" not in set(live["source"])
    assert len(reader.predictions(source="replay")) == 5
    # user text is data, never part of a query
    assert reader.predictions(user="x' OR '1'='1").empty
    assert reader.predictions(model_version="1\" or tags.x = \"y").empty


def test_incremental_refresh_reads_only_new_runs(tracking, logged, monkeypatch):
    logger, _ = logged
    reader = PredictionReader(tracking)
    assert len(reader.predictions()) == 30
    loads = []
    real = reader.mirror._fetch
    monkeypatch.setattr(reader.mirror, "_fetch", lambda run: loads.append(run.run_id) or real(run))
    assert reader.refresh() == 0 and loads == []
    for i in range(30, 40):
        logger.submit(make_record(i))
    assert logger.flush(timeout=60)
    df = reader.predictions()
    assert len(df) == 40 and df["request_id"].is_unique
    assert len(loads) == 2  # 10 new records in batches of 8: two runs, nothing else re-read


def test_unflushed_spool_rows_are_included_once(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100, start=False)
    recs = [make_record(i) for i in range(6)]
    for rec in recs[:4]:
        logger.submit(rec)
    assert logger.flush(timeout=60)
    for rec in recs[4:]:
        logger.submit(rec)
    reader = PredictionReader(tracking)
    assert len(reader.predictions()) == 6
    assert len(reader.predictions(include_pending=False)) == 4
    # records both in MLflow and still in the spool (a crash before bookkeeping): once
    batch = logger.spool.claim(logger.owner, max_records=100, max_age_s=0, lease_s=60, force=True)
    logger.writer.write(batch)
    df = reader.predictions()
    assert len(df) == 6 and df["request_id"].is_unique


def test_reader_dedups_a_batch_written_twice(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100, start=False)
    for i in range(5):
        logger.submit(make_record(i))
    batch = logger.spool.claim(logger.owner, max_records=100, max_age_s=0, lease_s=60, force=True)
    from dataclasses import replace

    logger.writer.write(batch)
    logger.writer.write(replace(batch, batch_id="f" * 32))  # e.g. a lease that ran out mid-write
    df = PredictionReader(tracking, include_spool=False).predictions()
    assert len(df) == 5


def test_feedback_latest_word_wins_and_joins_on_request_id(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100, start=False)
    recs = [make_record(i) for i in range(3)]
    for rec in recs:
        logger.submit(rec)
    logger.submit_feedback(make_feedback(recs[0], label="bagel"))
    logger.submit_feedback(make_feedback(recs[1]))
    assert logger.flush(timeout=60)
    logger.submit_feedback(make_feedback(recs[0], label="pretzel", when=recs[0].timestamp + timedelta(hours=1)))
    reader = PredictionReader(tracking)
    fb = reader.feedback()
    assert tuple(fb.columns) == FEEDBACK_FIELDS and len(fb) == 2
    assert fb.set_index("request_id").loc[recs[0].request_id, "label"] == "pretzel"  # still in the spool
    assert logger.flush(timeout=60)
    fb = reader.feedback()
    assert fb.set_index("request_id").loc[recs[0].request_id, "label"] == "pretzel"
    joined = reader.predictions().merge(fb, on="request_id", suffixes=("", "_fb"))
    assert len(joined) == 2 and set(joined["kind"]) == {"corrected", "confirmed"}


def test_no_experiment_yet_gives_empty_typed_frames(tracking):
    reader = PredictionReader(tracking)
    df = reader.predictions()
    assert df.empty and tuple(df.columns) == ROW_FIELDS
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert reader.feedback().empty and reader.pending_count() == 0
    assert not (tracking.spool_dir / "spool.db").exists()  # a reader never creates a spool


def test_batches_lists_runs(tracking, logged):
    batches = PredictionReader(tracking).batches()
    assert len(batches) == 6 and set(batches["kind"]) == {"predictions"}
    assert batches["rows"].sum() == 30 and batches["run_id"].is_unique


def test_a_batch_that_cannot_be_read_now_is_retried(tracking, logged, monkeypatch):
    reader = PredictionReader(tracking, include_spool=False)
    real = reader.mirror._fetch
    failing = {"on": True}

    def flaky(run):
        if failing["on"] and run.tags.get("model_version") == "2":
            raise OSError("connection reset while downloading")
        return real(run)

    monkeypatch.setattr(reader.mirror, "_fetch", flaky)
    assert set(reader.predictions()["model_version"]) == {"1"}
    failing["on"] = False
    df = reader.predictions()
    assert len(df) == 30 and df["request_id"].is_unique


class _Clock:
    """A machine's wall clock, ``offset_s`` away from ours (what NTP trouble looks like)."""

    def __init__(self, offset_s: float):
        self.offset_s = offset_s

    def __call__(self) -> float:
        return time.time() + self.offset_s


@pytest.mark.parametrize("behind_s", [600, -600])
def test_two_writers_whose_clocks_differ_by_ten_minutes_are_both_read_exactly_once(tracking, loggers,
                                                                                    tmp_path, behind_s):
    """Machine B's clock is ten minutes behind (or ahead of) machine A's. Whatever order
    their runs come in, every batch is found within one refresh, and only once."""
    from nutrilearn.tracking.writer import BatchWriter

    def machine(name: str, offset_s: float):
        writer = BatchWriter(tracking.tracking_uri, tracking.predictions_experiment,
                             store.artifact_location(tracking, tracking.tracking_uri), clock=_Clock(offset_s))
        return loggers(tracking, spool_dir=tmp_path / name, batch_max_records=5, start=False, writer=writer)

    a, b = machine("a", 0.0), machine("b", -behind_s)
    reader = PredictionReader(tracking, include_spool=False)
    expected: set[str] = set()
    n = 0
    for step in range(4):  # interleaved: A writes, the reader looks, B writes, the reader looks
        for logger in (a, b):
            for _ in range(7):  # 7 records: a batch of 5 and one of 2 each time
                rec = make_record(n, user=f"m{step}")
                n += 1
                logger.submit(rec)
                expected.add(rec.request_id)
            assert logger.flush(timeout=60)
            df = reader.predictions(include_pending=False)
            assert set(df["request_id"]) == expected  # within one refresh
            assert df["request_id"].is_unique
    assert len(reader.mirror.finder.state.floors) == 2  # two writers, found by their write numbers, not clocks
    assert len(raw_rows(tracking)) == len(expected)


def test_a_run_written_late_with_a_lower_number_is_still_found(tracking, loggers):
    """Two flushers share a spool: the batch numbered first finishes last."""
    logger = loggers(tracking, batch_max_records=3, start=False)
    for i in range(6):
        logger.submit(make_record(i))
    slow = logger.spool.claim(logger.owner, max_records=3, max_age_s=0, lease_s=60, force=True)
    slow_position = logger.spool.write_position(slow.batch_id)  # number 1, not written yet
    fast = logger.spool.claim(new_owner(), max_records=3, max_age_s=0, lease_s=60, force=True)
    assert fast.batch_id != slow.batch_id
    logger.writer.write(fast, logger.spool.write_position(fast.batch_id))
    logger.spool.complete(fast.batch_id)
    reader = PredictionReader(tracking, include_spool=False)
    assert len(reader.predictions()) == 3
    logger.writer.write(slow, slow_position)
    logger.spool.complete(slow.batch_id)
    assert len(reader.predictions()) == 6


def test_a_down_server_leaves_the_cache_and_the_spool_readable(tracking, loggers):
    logger = loggers(tracking, batch_max_records=100, start=False)
    for i in range(4):
        logger.submit(make_record(i))
    reader = PredictionReader(tracking, tracking_uri=f"http://127.0.0.1:{free_port()}")
    df = reader.predictions()  # at once, not after MLflow's minutes of retries
    assert len(df) == 4 and "unreachable" in reader.last_error
