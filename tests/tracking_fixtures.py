"""Helpers for the tracking tests: realistic records without the model, isolated stores.

Imported by the ``tests/test_tracking*.py`` files (``from tracking_fixtures import ...``).
No TensorFlow anywhere here: these are plumbing tests and must stay fast.

MLflow's sqlite store costs seconds to create and to open the first time in a process, so
one store serves the whole session and every test gets its own experiment (and its own
spool and home directory). Run as a script, this file is the child process of the
fault tests: ``python tracking_fixtures.py child N TAG`` submits N records (forever if
N is 0), printing each request id once ``submit`` has returned.

Test modules load it with ``pytest_plugins = ["tracking_fixtures"]`` (so its session store
is one for the whole run) and import its helpers directly. PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nutrilearn.config import Settings  # noqa: E402
from nutrilearn.tracking.synthetic import T0, make_feedback, make_record  # noqa: E402,F401 (re-exported)

FAST = dict(poll_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.5)  # logger timings for tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- stores ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory) -> str:
    """One migrated sqlite tracking store for the session (artifacts beside it)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the tables once
    return uri


@pytest.fixture
def tracking(tmp_path, monkeypatch, mlflow_db) -> Settings:
    """Settings for one test: own home, spool and experiment; the session's store."""
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_db)
    monkeypatch.setenv("NUTRILEARN_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("NUTRILEARN_PREDICTIONS_EXPERIMENT", f"predictions-{uuid.uuid4().hex[:10]}")
    return Settings.from_env()


@pytest.fixture
def loggers():
    """``loggers(settings, **kw)`` builds PredictionLoggers (test timings) closed at teardown."""
    from nutrilearn.tracking.logger import PredictionLogger

    made = []

    def build(settings: Settings, **kw) -> PredictionLogger:
        logger = PredictionLogger(settings, **{**FAST, **kw})
        made.append(logger)
        return logger

    yield build
    for logger in made:
        logger.close(timeout=0.0)


def raw_rows(settings: Settings, tracking_uri: str | None = None) -> list[str]:
    """Every request id in every FINISHED batch run, duplicates kept (no reader involved)."""
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or settings.tracking_uri)
    exp = client.get_experiment_by_name(settings.predictions_experiment)
    if exp is None:
        return []
    ids: list[str] = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=5000):
        if run.data.tags.get("nutrilearn.kind") != "predictions":
            continue
        with tempfile.TemporaryDirectory() as dst:
            path = client.download_artifacts(run.info.run_id, "predictions.parquet", dst)
            ids.extend(pq.read_table(path, columns=["request_id"]).column(0).to_pylist())
    return ids


def child_env(settings: Settings, tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NUTRILEARN_HOME=str(settings.home), MLFLOW_TRACKING_URI=tracking_uri or settings.tracking_uri,
               NUTRILEARN_SPOOL_DIR=str(settings.spool_dir),
               NUTRILEARN_PREDICTIONS_EXPERIMENT=settings.predictions_experiment, **extra)
    return env


def start_child(settings: Settings, n: int, tag: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "tracking_fixtures.py"), "child", str(n), tag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(settings, **extra))


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can stop and start again."""

    def __init__(self, root: Path, backend_uri: str):
        self.root, self.backend_uri = root, backend_uri
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.root / "server-artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("mlflow server did not come up")

    def stop(self) -> None:
        """Down hard (SIGKILL to its process group): an outage, not a polite shutdown."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None


def _child(n: int, tag: str) -> None:
    from nutrilearn.tracking.logger import PredictionLogger

    settings = Settings.from_env()
    logger = PredictionLogger(settings, batch_max_records=int(os.environ.get("CHILD_BATCH", "10")),
                              batch_max_age_s=0.05, **FAST)
    i = 0
    while n == 0 or i < n:
        rec = make_record(i, user=tag)
        logger.submit(rec)
        print(rec.request_id, flush=True)
        i += 1
        time.sleep(float(os.environ.get("CHILD_PAUSE_S", "0.002")))
    ok = logger.flush(60)
    logger.close(5)
    sys.exit(0 if ok else 3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        _child(int(sys.argv[2]), sys.argv[3])
