"""Monitoring's "Prediction logging" block and the sidebar: a set-aside batch is shown,
with what to do, and retried from the page. Real spool, real sqlite MLflow store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from streamlit.testing.v1 import AppTest

from nutrilearn.tracking.logger import PredictionLogger, prediction_group
from tests.conftest import ROOT
from tracking_fixtures import make_record

pytest_plugins = ["tracking_fixtures"]


@pytest.fixture
def home_with_a_dead_letter(tracking, monkeypatch):
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    logger = PredictionLogger(tracking, start=False, batch_max_records=50)
    now = datetime.now(timezone.utc)
    for i in range(30):
        assert logger.submit(make_record(i, error=False, when=now - timedelta(minutes=30 - i)))
    logger.spool.append("predictions", prediction_group(make_record(0, error=False)), "poison", b"{broken")
    assert logger.flush(timeout=60)
    assert sum(d.n for d in logger.dead_letters()) == 1
    logger.close(timeout=0)
    return tracking


def test_monitoring_health_shows_dead_letters_and_retries_them(home_with_a_dead_letter):
    at = AppTest.from_file(str(ROOT / "pages" / "monitoring.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Set aside (dead letters)"] == "1"
    assert metrics["Waiting in the spool"] == "0"
    errors = " ".join(e.value for e in at.error)
    assert "1 record(s) in 1 batch(es) failed to write" in errors and "--retry-dead-letters" in errors
    assert any("JSONDecodeError" in str(df.value.to_dict()) for df in at.dataframe)
    next(b for b in at.button if b.key == "retry_dead").click()
    at.run()
    assert any("1 record(s) back in line" in s.value for s in at.success)
