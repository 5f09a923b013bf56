"""Faults with real processes: kill -9 mid-stream, and two processes logging at once.

Each child is ``tracking_fixtures.py child``: a PredictionLogger that prints every request
id after ``submit`` returned (that is the acknowledgement), with small, quick batches so
that flushes run all the time the stream does.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from nutrilearn.tracking.reader import PredictionReader
from tracking_fixtures import raw_rows, start_child

# Fixtures (mlflow_db, tracking, loggers) as a plugin: one session store shared by every module.
pytest_plugins = ["tracking_fixtures"]

pytestmark = pytest.mark.slow


def _collect(proc, into: list[str]) -> threading.Thread:
    def pump():
        for line in proc.stdout:
            line = line.strip()
            if len(line) == 32:
                into.append(line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def _finished_runs(settings) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name(settings.predictions_experiment)
    return 0 if exp is None else len(client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"))


def _assert_exactly_once(settings, acked: list[str]) -> None:
    raw = raw_rows(settings)
    assert len(raw) == len(set(raw)), "a record was written to MLflow twice"
    assert set(acked) <= set(raw), f"{len(set(acked) - set(raw))} acknowledged records lost"
    df = PredictionReader(settings).predictions()
    assert df["request_id"].is_unique and set(acked) <= set(df["request_id"])


def test_kill_9_mid_stream_then_restart_reads_every_acknowledged_record_once(tracking, loggers):
    child = start_child(tracking, 0, "killed", CHILD_BATCH="7")
    acked: list[str] = []
    pump = _collect(child, acked)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (len(acked) < 100 or _finished_runs(tracking) < 3):
        assert child.poll() is None, child.stderr.read()
        time.sleep(0.2)
    assert _finished_runs(tracking) >= 3, "the child never flushed"
    os.kill(child.pid, signal.SIGKILL)  # mid-stream, with flushes under way
    child.wait(10)
    pump.join(10)
    assert child.returncode == -signal.SIGKILL
    restarted = loggers(tracking, batch_max_records=50)
    assert restarted.flush(timeout=60)
    assert restarted.spool_pending() == 0
    _assert_exactly_once(tracking, acked)


def test_two_processes_logging_at_once_every_record_once(tracking):
    children = [start_child(tracking, 120, tag, CHILD_BATCH="13", CHILD_PAUSE_S="0.001") for tag in ("p1", "p2")]
    acked: list[str] = []
    pumps = [_collect(c, acked) for c in children]
    for child, pump in zip(children, pumps):
        assert child.wait(180) == 0, child.stderr.read()
        pump.join(10)
    assert len(acked) == 240
    _assert_exactly_once(tracking, acked)
    assert set(PredictionReader(tracking).predictions()["user"]) == {"p1", "p2"}
