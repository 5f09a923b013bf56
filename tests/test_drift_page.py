"""The Drift page, driven by AppTest over a fake reader (the page's only data source)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from test_drift_units import frame

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "drift.py")


class FakeReader:
    predictions_frame = pd.DataFrame()
    feedback_frame = pd.DataFrame()

    def __init__(self, *args, **kwargs):
        pass

    def predictions(self, **kwargs):
        return self.predictions_frame

    def feedback(self, **kwargs):
        return self.feedback_frame


@pytest.fixture
def page(home, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setattr("nutrilearn.tracking.reader.PredictionReader", FakeReader)
    return FakeReader


def _data() -> tuple[pd.DataFrame, pd.DataFrame]:
    ref = frame(300, 1, start="2026-11-01", freq="10min")
    cur = frame(300, 2, brightness=0.3, start="2026-11-04", freq="10min")
    data = pd.concat([ref, cur], ignore_index=True).assign(source="app", user="analyst", model_alias="champion")
    judged = data.iloc[::5]
    feedback = pd.DataFrame({"request_id": judged["request_id"], "timestamp": judged["timestamp"],
                             "user": "analyst", "label": judged["label"].where(judged["confidence"] > 0.7, "other"),
                             "predicted_label": judged["label"], "source": "app", "kind": "confirmed"})
    return data, feedback


def test_page_shows_the_verdict_signals_and_charts(page):
    page.predictions_frame, page.feedback_frame = _data()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["drift_ref_n"] = 300
    at.session_state["drift_cur_n"] = 300
    at.run()
    assert not at.exception
    assert at.error and "DRIFT" in at.error[0].value and "brightness" in at.error[0].value
    table = at.dataframe[0].value
    assert list(table["signal"]) == ["food", "confidence", "image", "embedding"]
    assert table.set_index("signal").at["image", "verdict"] == "drift"
    specs = [c.proto.spec for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))]
    assert len(specs) >= 6  # shares, confidence, property, over time, embeddings, accuracy, reliability
    assert any('"p_value"' in s for s in specs) and any('"expected_accuracy"' in s for s in specs)


def test_page_explains_when_there_is_too_little_data(page):
    page.predictions_frame = frame(10, 1).assign(source="app")
    page.feedback_frame = pd.DataFrame(columns=["request_id", "timestamp", "user", "label", "predicted_label",
                                                "source", "kind"])
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.info and "Not enough predictions" in at.info[0].value
