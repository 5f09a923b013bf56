"""The same logger and reader against a real ``mlflow server`` on 127.0.0.1, down and back."""

from __future__ import annotations

import shutil
import time

import pytest

from nutrilearn.tracking.reader import PredictionReader
from tracking_fixtures import MlflowServer, make_record, raw_rows

# Fixtures (mlflow_db, tracking, loggers) as a plugin: one session store shared by every module.
pytest_plugins = ["tracking_fixtures"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_db):
    root = tmp_path_factory.mktemp("server")
    shutil.copy(mlflow_db.removeprefix("sqlite:///"), root / "server.db")  # already migrated: quick start
    srv = MlflowServer(root, f"sqlite:///{root / 'server.db'}")
    srv.start()
    yield srv
    srv.stop()


def test_logger_and_reader_through_a_tracking_server(tracking, loggers, server, tmp_path):
    logger = loggers(tracking, tracking_uri=server.uri, batch_max_records=10)
    ids = set()
    for i in range(25):
        rec = make_record(i)
        logger.submit(rec)
        ids.add(rec.request_id)
    assert logger.flush(timeout=60)
    reader = PredictionReader(tracking, tracking_uri=server.uri, cache_dir=tmp_path / "cache")
    df = reader.predictions()
    assert set(df["request_id"]) == ids and df["request_id"].is_unique
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert len(list((tmp_path / "cache").rglob("*.parquet"))) >= 1  # downloaded batches kept locally
    server.stop()  # a new process while the server is down: the mirror still answers
    try:
        again = PredictionReader(tracking, tracking_uri=server.uri, cache_dir=tmp_path / "cache")
        assert len(again.predictions()) == 25 and "unreachable" in again.last_error
    finally:
        server.start()


def test_server_down_for_a_while_then_back_loses_nothing(tracking, loggers, server):
    logger = loggers(tracking, tracking_uri=server.uri, batch_max_records=5, batch_max_age_s=0.05)
    ids = []
    for i in range(5):
        rec = make_record(i)
        logger.submit(rec)
        ids.append(rec.request_id)
    assert logger.flush(timeout=60)
    server.stop()
    try:
        for i in range(5, 17):
            rec = make_record(i)
            assert logger.submit(rec)  # durable in the spool, whatever MLflow is doing
            ids.append(rec.request_id)
        assert logger.flush(timeout=5) is False
        status = logger.status()
        assert status.reachable is False and status.pending == 12
    finally:
        server.start()
    deadline = time.monotonic() + 60  # the background flusher's backoff brings them over
    while logger.spool_pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logger.spool_pending() == 0 and logger.status().reachable is True
    raw = raw_rows(tracking, server.uri)
    assert sorted(raw) == sorted(ids)
    df = PredictionReader(tracking, tracking_uri=server.uri).predictions()
    assert sorted(df["request_id"]) == sorted(ids)
