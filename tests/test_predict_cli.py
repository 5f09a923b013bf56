"""``nutrilearn predict`` as a whole process: no TensorFlow or MLflow, durable at exit, in MLflow after."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nutrilearn.config import Settings

ROOT = Path(__file__).resolve().parents[1]

PREDICT = """
import json, sys
from nutrilearn.cli import main
rc = main(["predict", *sys.argv[1:]])
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}), file=sys.stderr)
"""


def _predict(*args: str) -> tuple[list[dict], dict]:
    done = subprocess.run([sys.executable, "-c", PREDICT, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    return [json.loads(line) for line in done.stdout.splitlines()], summary


def _logged(settings: Settings, include_pending: bool) -> set[str]:
    from nutrilearn.tracking.reader import PredictionReader

    reader = PredictionReader(settings)
    try:
        return set(reader.predictions(include_pending=include_pending)["request_id"])
    finally:
        reader.close()


def _wait_for_handoff(settings: Settings) -> None:
    """Block until the detached flusher (which holds this lock from its start) is done."""
    from nutrilearn.cli.handoff import lock_path

    with open(lock_path(settings.spool_dir), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.mark.food10
def test_predict_needs_neither_tensorflow_nor_mlflow_and_its_records_reach_mlflow(home, food10):
    from nutrilearn.cli.setup import register_version_one

    settings = Settings.from_env()
    assert register_version_one(settings) == 0  # as `nutrilearn setup` does: @champion, its head downloaded
    photos = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[:2]
    rows, summary = _predict(*map(str, photos), "--json")
    assert summary == {"rc": 0, "heavy": []}
    assert [r["label"] for r in rows] == ["burrito", "burrito"] and {r["model_version"] for r in rows} == {"1"}
    ids = {r["request_id"] for r in rows}
    assert ids <= _logged(settings, include_pending=True)  # durable (spool or MLflow) the moment it exited
    _wait_for_handoff(settings)
    assert ids <= _logged(settings, include_pending=False)  # and in MLflow without anyone waiting for it


@pytest.mark.food10
def test_predict_with_a_bounded_wait_flushes_before_exit(home, food10):
    settings = Settings.from_env()
    photo = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[0]
    rows, summary = _predict(str(photo), "--json", "--flush-timeout", "60")
    assert summary["rc"] == 0 and "mlflow" in summary["heavy"] and "tensorflow" not in summary["heavy"]
    assert rows[0]["request_id"] in _logged(settings, include_pending=False)


def test_a_second_handoff_does_not_start_while_one_holds_the_lock(home):
    from nutrilearn.cli import handoff

    settings = Settings.from_env()
    settings.spool_dir.mkdir(parents=True)
    with open(handoff.lock_path(settings.spool_dir), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert handoff.start(settings.spool_dir) is False
    assert handoff.start(settings.spool_dir) is True  # nothing pending: it looks, finds nothing, ends
    _wait_for_handoff(settings)
