"""The Drift page over a real store: records written by the real PredictionLogger (spool,
batch writer, MLflow runs with predictions.parquet in a sqlite store), read back by the
real PredictionReader, and the page driven with AppTest. Asserts what a person reads: the
verdict banner with both windows and their counts, the per-signal table, the notes.

(tests/test_drift_page.py covers the page's drawing over a fake reader.)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from streamlit.testing.v1 import AppTest

from nutrilearn.tracking.synthetic import make_feedback
from tests.conftest import ROOT
from tracking_fixtures import make_record, raw_rows

pytest_plugins = ["tracking_fixtures"]

PAGE = str(ROOT / "pages" / "drift.py")
N = 300  # per window


def _log(settings, loggers, *, darker: bool, feedback_every: int = 10) -> datetime:
    """N predictions three to four days ago and N in the last twelve hours (darker photos
    when ``darker``), every ``feedback_every``-th confirmed, all flushed to MLflow."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    logger = loggers(settings, batch_max_records=100)
    for i in range(2 * N):
        if i < N:
            when = now - timedelta(days=4) + timedelta(minutes=4 * i)
        else:
            when = now - timedelta(hours=12) + timedelta(minutes=2 * (i - N))
        rec = make_record(i, error=False, when=when, user=f"analyst{i % 3}")
        if darker and i >= N:
            rec.brightness *= 0.6
        assert logger.submit(rec)
        if i % feedback_every == 0:
            assert logger.submit_feedback(make_feedback(rec))
    assert logger.flush(timeout=120), logger.status()
    assert len(raw_rows(settings)) == 2 * N  # in MLflow's batch runs, not only in the spool
    return now


@pytest.fixture
def page(tracking, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    monkeypatch.delenv("NUTRILEARN_ADMIN_TOKEN", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()

    def run(**state) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=180)
        for key, value in state.items():
            at.session_state[key] = value
        return at.run()

    return run


def _table(at):
    return at.dataframe[0].value.set_index("signal")


def test_darker_photos_in_the_last_day_are_reported_as_drift(tracking, loggers, page):
    _log(tracking, loggers, darker=True)
    at = page(drift_ref_n=N, drift_cur_kind="Last D days", drift_cur_days=1)
    assert not at.exception, at.exception
    banner = at.error[0].value
    assert banner.startswith("**DRIFT**")
    assert f"reference `first:{N}` (first {N}: {N} found" in banner  # asked and found
    assert f"current `days:1` (days:1: {N} found" in banner
    assert "brightness" in banner
    table = _table(at)
    assert list(table.index) == ["food", "confidence", "image", "embedding"]
    assert table.at["image", "verdict"] == "drift"
    assert table.at["food", "verdict"] == "no drift" and table.at["confidence", "verdict"] == "no drift"


def test_the_same_traffic_throughout_is_no_drift_and_windows_count_what_they_hold(tracking, loggers, page):
    _log(tracking, loggers, darker=False)
    at = page(drift_ref_n=N, drift_cur_n=N)  # first 300 against last 300
    assert not at.exception, at.exception
    assert not at.error
    banner = at.success[0].value
    assert banner.startswith("**NO DRIFT**")
    assert f"reference `first:{N}` (first {N}: {N} found" in banner and f"current `last:{N}` (last {N}: {N} found" in banner
    assert set(_table(at)["verdict"]) == {"no drift"}

    # a current window of the last 7 days holds all 600 but the reference's 300 are left out of it
    at = page(drift_ref_n=N, drift_cur_kind="Last D days", drift_cur_days=7)
    assert not at.exception, at.exception
    assert f"current `days:7` (days:7: {N} found" in at.success[0].value

    # a reference bigger than the store leaves too little for the current window, and the page says so
    at = page(drift_ref_n=2 * N, drift_cur_n=N)
    assert not at.exception, at.exception
    note = at.info[0].value
    assert note.startswith("Not enough predictions to test")
    assert f"reference first {2 * N}: {2 * N} found, current last {N}: 0 found" in note


def test_an_empty_store_says_there_is_too_little_data(tracking, page):
    at = page()
    assert not at.exception, at.exception
    assert at.info and at.info[0].value.startswith("Not enough predictions to test")
    assert "reference first 500: 0 found, current last 500: 0 found" in at.info[0].value
