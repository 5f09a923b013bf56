"""Monitoring › Trends over a real store (records in its spool): which answers the feedback figures count.

Version 1 served two days ago; then version 2 was promoted and version 1 answers the same
photos in shadow. Feedback is given on the photos people were shown (the served request
ids); it judges a shadow answer to the same photo too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "monitoring.py")


def _store() -> tuple[list, list, dict]:
    import dataclasses

    from nutrilearn.tracking.records import SHADOW_SUFFIX
    from nutrilearn.tracking.synthetic import make_feedback, make_record

    now = datetime.now(timezone.utc)
    before = [make_record(i, model_version="1", error=False, when=now - timedelta(days=2, minutes=i)) for i in range(10)]
    after = [make_record(100 + i, model_version="2", error=False, when=now - timedelta(minutes=30 + i)) for i in range(10)]
    shadows = [dataclasses.replace(make_record(200 + i, model_version="1", error=False, when=r.timestamp),
                                   request_id=r.request_id + SHADOW_SUFFIX, model_alias="challenger")
               for i, r in enumerate(after)]
    judged = before[:4] + after[:6]  # feedback on served answers only, as people give it
    feedback = [make_feedback(r, label=r.label if i % 2 else "pizza_other") for i, r in enumerate(judged)]
    counts = {"served_judged": len(judged), "shadow_judged": 6, "v1_served_judged": 4}
    return before + after + shadows, feedback, counts


def _log(predictions: list, feedback: list) -> None:
    """The records in the home's spool (unflushed: History reads them from there), through
    the logger's own checks."""
    import streamlit as st

    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger

    st.cache_resource.clear()
    st.cache_data.clear()
    logger = PredictionLogger(Settings.from_env(), start=False)
    try:
        assert all(logger.submit(r) for r in predictions)
        assert all(logger.submit_feedback(f) for f in feedback)
    finally:
        logger.spool.close()


@pytest.fixture
def page(home):
    predictions, feedback, counts = _store()
    _log(predictions, feedback)
    return counts


def _run(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_trends_count_the_feedback_on_served_answers(page):
    m = _metrics(_run())
    assert m["Predictions with feedback"] == str(page["served_judged"])


def test_trends_count_the_shadow_answers_in_view_that_feedback_judged(page):
    """Version 1 alone, last 24 hours, shadow answers asked for: the view holds only its
    shadow answers, and feedback on those photos judges them (it showed 0 and hid the
    accuracy table, saying there was no feedback)."""
    at = _run(mon_period="Last 24 hours", mon_versions=["1"], mon_include_shadow=True)
    m = _metrics(at)
    assert m["Predictions"] == "10"
    assert m["Predictions with feedback"] == str(page["shadow_judged"])
    assert m["Realized accuracy"] != "–"
    table = next(d.value for d in at.dataframe if "answers" in d.value.columns and "judged" in d.value.columns)
    assert table[["model_version", "answers", "judged"]].values.tolist() == [["1", "shadow", page["shadow_judged"]]]
    assert not any("No feedback on these predictions yet" in c.value for c in at.caption)


def test_trends_with_version_one_and_shadows_count_both_of_its_roles(page):
    at = _run(mon_versions=["1"], mon_include_shadow=True)
    assert _metrics(at)["Predictions with feedback"] == str(page["v1_served_judged"] + page["shadow_judged"])


def test_feedback_hidden_with_replayed_traffic_is_said_not_zero_without_a_word(home):
    """Live uploads without feedback, replayed traffic with it: the live view's trends show
    0 (true of the view) and say where the feedback is."""
    import dataclasses

    predictions, feedback, _ = _store()
    live = {r.request_id for r in predictions[10:12]}  # two of version 2's stay live...
    predictions = [r if r.request_id in live else dataclasses.replace(r, source="replay") for r in predictions]
    feedback = [f for f in feedback if f.request_id not in live]  # ...and have no feedback
    _log(predictions, feedback)
    at = _run()
    assert _metrics(at)["Predictions"] == "2" and _metrics(at)["Predictions with feedback"] == "0"
    said = " ".join(c.value for c in at.caption)
    assert f"{len(feedback)} feedback record(s) of this time range judge predictions" in said
    assert "Hide replayed traffic" in said
    at = _run(mon_hide_replayed=False)
    assert _metrics(at)["Predictions with feedback"] == str(len(feedback))
