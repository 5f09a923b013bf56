"""The Drift page, driven by AppTest over a fake reader (the page's only data source)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from test_drift_units import frame

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "drift.py")


class FakeReader:
    """The page reads windows through ``history``: a real History over a mirror holding
    ``predictions_frame`` (never synced with MLflow)."""

    predictions_frame = pd.DataFrame()
    feedback_frame = pd.DataFrame()

    def __init__(self, *args, **kwargs):
        import pyarrow as pa

        from nutrilearn.config import Settings
        from nutrilearn.monitoring.history import History
        from nutrilearn.tracking.mirror import Mirror

        settings = Settings.from_env()
        self.mirror = Mirror(settings, directory=settings.home / f"fake-mirror-{uuid.uuid4().hex[:8]}")
        if len(self.predictions_frame):
            self.mirror.ingest("predictions", pa.Table.from_pandas(self.predictions_frame, preserve_index=False))
        self.history = History(self.mirror, None)

    def refresh(self) -> int:
        return 0

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
    assert len(_specs(at)) == 1  # lazy tabs: only the open one (Foods) ran
    specs = []
    for tab in ("Confidence", "Image properties", "Over time", "Embeddings", "Photo clusters", "Accuracy"):
        drawn = _specs(open_tab(at, tab))
        assert drawn, tab
        specs += drawn
    assert len(specs) >= 7  # confidence, property, over time, embeddings, clusters, accuracy, reliability
    assert any('"p_value"' in s for s in specs) and any('"expected_accuracy"' in s for s in specs)


def _specs(at) -> list[str]:
    return [c.proto.spec for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))]


def open_tab(at, label: str):
    """Open a tab of the page (its lazy tabs run only the open one) and rerun."""
    at.session_state["drift_tab"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def test_page_explains_when_there_is_too_little_data(page):
    page.predictions_frame = frame(10, 1).assign(source="app")
    page.feedback_frame = pd.DataFrame(columns=["request_id", "timestamp", "user", "label", "predicted_label",
                                                "source", "kind"])
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.info and "Not enough predictions" in at.info[0].value


def test_over_time_chart_marks_the_champion_moves_in_its_span(page, monkeypatch):
    """Rules at each champion move the chart's days take in, labelled with the versions, in
    every signal's row; a move months away is left out (the axis would stretch over it)."""
    from nutrilearn.monitoring import versions
    from nutrilearn.registry.store import AliasEvent

    when = pd.Timestamp("2026-11-04 00:00", tz="UTC")  # where the current window starts
    events = [AliasEvent(when.to_pydatetime(), "champion", "promote", "1", "2", "pytest", "better"),
              AliasEvent((when - pd.Timedelta(days=90)).to_pydatetime(), "champion", "create", None, "1", "pytest", "")]
    monkeypatch.setattr(versions, "champion_moves", lambda settings: versions.alias_moves(events))
    page.predictions_frame, page.feedback_frame = _data()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["drift_ref_n"] = 300
    at.session_state["drift_cur_n"] = 300
    open_tab(at, "Over time")
    chart = next(c for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))
                 if '"distance"' in c.proto.spec and '"facet"' in c.proto.spec)
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    data = pd.concat([convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets])
    marks = data.dropna(subset=["when"])
    assert set(marks["text"]) == {"promote: v1 → v2"}
    assert set(marks["signal"]) == set(data.dropna(subset=["start"])["signal"])  # every row of the facet
    assert (pd.to_datetime(marks["when"]) == when.tz_localize(None)).all()  # naive UTC, like the chunks
    assert any("Dashed lines: champion moves" in c.value for c in at.caption)


def _chart(at, field: str):
    """The page's chart whose spec names ``field`` (AppTest keeps altair charts as specs)."""
    return next(c for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))
                if f'"{field}"' in c.proto.spec)


def test_embedding_projection_shows_each_points_thumbnail_on_hover_and_opens_it_on_click(page):
    """The Embeddings tab's projection is a photo map like the cluster map: every point with
    a kept thumbnail carries it (a data URL) to an image layer filtered to the hovered point,
    and a click selects the point's request id for the record beside the map."""
    import json

    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    from nutrilearn.monitoring.photos import data_url
    from tests.conftest import image_bytes

    data, page.feedback_frame = _data()
    kept = {r: image_bytes(size=(64, 48), fmt="WEBP", color=(i % 256, 90, 30))
            for i, r in enumerate(data["request_id"].iloc[::2])}  # every other photo kept a thumbnail
    page.predictions_frame = data.assign(thumbnail=data["request_id"].map(kept))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["drift_ref_n"] = 300
    at.session_state["drift_cur_n"] = 300
    open_tab(at, "Embeddings")
    chart = _chart(at, "pc1")
    spec = json.loads(chart.proto.spec)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["point", "image"]
    hover = next(p for p in spec["params"] if p["select"].get("on") == "pointerover")
    assert hover["select"]["nearest"] and hover["select"]["fields"] == ["request_id"]
    assert spec["layer"][1]["transform"] == [{"filter": {"param": hover["name"], "empty": False}}]
    assert any(p["name"] == "pick" and p["select"]["on"] == "click" for p in spec["params"])
    points = pd.concat([convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets])
    assert 200 <= len(points) <= 300 and set(points["window"]) == {"reference", "current"}
    with_photo = points["request_id"].isin(kept)
    assert with_photo.any() and (~with_photo).any()
    assert (points.loc[with_photo, "photo"] == points.loc[with_photo, "request_id"].map(
        lambda r: data_url(kept[r]))).all()  # each point its own photo
    assert points.loc[~with_photo, "photo"].isna().all()
    assert any("hover over a point to see its photo" in c.value for c in at.caption)


def test_an_alpha_change_applies_alpha_to_the_chunks_already_tested(page, monkeypatch):
    """The over-time tests run once per reference and sample: alpha is applied after them."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    from nutrilearn.monitoring.drift import DriftMonitor

    calls = []
    tested = DriftMonitor.chunk_tests
    monkeypatch.setattr(DriftMonitor, "chunk_tests", lambda self, *a, **k: calls.append(a) or tested(self, *a, **k))
    page.predictions_frame, page.feedback_frame = _data()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["drift_ref_n"] = 300
    at.session_state["drift_cur_n"] = 300
    at.run()
    assert calls == []  # the Foods tab is open: nothing is tested over time
    open_tab(at, "Over time")
    at.select_slider(key="drift_alpha").set_value(0.01).run()
    assert not at.exception, at.exception
    assert len(calls) == 1
    chart = next(c for c in list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))
                 if '"distance"' in c.proto.spec and '"facet"' in c.proto.spec)
    shown = pd.concat([convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets])
    assert set(shown.dropna(subset=["start"])["threshold"]) == {0.01}
