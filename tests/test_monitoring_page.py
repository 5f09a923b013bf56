"""The Monitoring page on real logged records: replayed food10 photos plus live uploads.

Records go through the real prediction path, the prediction logger and MLflow; the page
reads them back through the reader. Expected values are computed here from the records
the pipeline returned (plain Python/numpy), then compared with the data inside the
charts' vega-lite specs and the page's metrics and tables.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

PAGE = str(ROOT / "pages" / "monitoring.py")
pytestmark = pytest.mark.food10


@pytest.fixture(scope="module")
def logged(tmp_path_factory, classifier, food10):
    """An isolated home holding 24 replayed predictions (3 days, 3 users, half with
    feedback) and 3 live ones by alice (two photos and a text file), flushed to MLflow."""
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Photo
    from nutrilearn.replay import replay
    from nutrilearn.serving import build_analyzer
    from nutrilearn.tracking.logger import PredictionLogger

    home = tmp_path_factory.mktemp("monitoring-home")
    photos = home / "photos"
    for label in ("breakfast_burrito", "apple_pie", "beignets"):
        (photos / label).mkdir(parents=True)
        for src in sorted((food10 / "test" / label).glob("*.jpg"))[:3]:
            (photos / label / src.name).symlink_to(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NUTRILEARN_HOME", str(home))
        mp.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
        for var in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR"):
            mp.delenv(var, raising=False)
        settings = Settings.from_env()
        logger = PredictionLogger(settings)
        now = datetime.now(timezone.utc)
        result = replay(photos, n=24, days=3, users=3, feedback_share=0.5, seed=5, now=now,
                        analyzer=build_analyzer(settings, classifier=classifier), sink=logger)
        burrito = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[5]
        pie = sorted((food10 / "test" / "apple_pie").glob("*.jpg"))[5]
        live = build_analyzer(settings, classifier=classifier, sink=logger).analyze(
            [Photo(burrito.name, burrito.read_bytes()), Photo(pie.name, pie.read_bytes()),
             Photo("notes.txt", b"this is not a photo")], user="alice", source="app")
        assert logger.flush(120), logger.status()
        logger.close()
        yield SimpleNamespace(replayed=result.records, feedback=result.feedback, live=live, now=now)


def run(**widgets) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    for key, value in widgets.items():
        element = next(w for kind in ("toggle", "selectbox", "multiselect", "text_input", "slider")
                       for w in at.get(kind) if getattr(w, "key", None) == key)
        element.set_value(value)
    if widgets:
        at.run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> dict[str, list]:
    """Chart title -> the DataFrames carried in its vega-lite datasets."""
    out = {}
    for element in [*at.get("arrow_vega_lite_chart"), *at.get("vega_lite_chart")]:
        spec = json.loads(element.proto.spec)
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        out[title] = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in element.proto.datasets]
    return out


def display(label: str) -> str:
    from nutrilearn.vision.vocabulary import display_name

    return display_name(label)


def test_live_view_hides_replayed_traffic(logged):
    at = run()
    m = metrics(at)
    assert m["Predictions"] == "3" and m["Errors"] == "1" and m["Unique users"] == "1"
    ok = [r for r in logged.live if r.ok]
    assert m["Mean confidence"] == f"{np.mean([r.confidence for r in ok]):.1%}"
    # 3 requests are too few to judge an error rate of 33%: healthy, with a note saying so
    assert "healthy" in at.success[0].value
    assert any("judged from" in c.value for c in at.caption)
    errors = charts(at)["Errors by type"][0]
    assert errors[["error_type", "errors"]].values.tolist() == [["not_an_image", 1]]


def test_all_traffic_charts_carry_the_logged_values(logged):
    at = run(mon_hide_replayed=False)
    records = logged.replayed + logged.live
    ok = [r for r in records if r.ok]
    m = metrics(at)
    assert m["Predictions"] == str(len(records)) == "27"
    assert m["Unique users"] == "4"
    data = charts(at)

    foods = Counter(display(r.label) for r in ok if r.label != "not_food")
    top = data["Top foods"][0]
    assert len(top) == min(10, len(foods))
    assert dict(zip(top["food"], top["predictions"])) == {f: foods[f] for f in top["food"]}
    assert sorted(top["predictions"], reverse=True) == sorted(foods.values(), reverse=True)[:len(top)]

    daily = data["Predictions by day (UTC)"][0]
    per_day = Counter(r.timestamp.date() for r in records)
    got = daily[daily["series"] == "predictions"]
    assert {d.date(): c for d, c in zip(got["day"], got["count"]) if c} == dict(per_day)

    hist = next(f for f in data["Confidence distribution"] if "bin_start" in f)
    counts, _ = np.histogram([r.confidence for r in ok], bins=20, range=(0.0, 1.0))
    assert hist.sort_values("bin_start")["count"].tolist() == counts.tolist()

    # realized accuracy per day, from the feedback the replay gave (true label = folder name)
    by_id = {r.request_id: r for r in records}
    right, seen = Counter(), Counter()
    for fb in logged.feedback:
        day = by_id[fb.request_id].timestamp.date()
        seen[day] += 1
        right[day] += fb.label == by_id[fb.request_id].label
    trends = data["Daily trends (UTC days; served answers)"][0]
    versions = {by_id[fb.request_id].model_version for fb in logged.feedback}
    assert len(versions) == 1  # one version here: its line is the day's realized accuracy
    acc = trends[trends["measure"] == f"Realized accuracy, version {versions.pop()}"]
    assert {d.date(): v for d, v in zip(acc["day"], acc["value"])} == pytest.approx(
        {d: right[d] / seen[d] for d in seen})
    assert {d.date(): n for d, n in zip(acc["day"], acc["judged"])} == dict(seen)
    assert metrics(at)["Predictions with feedback"] == str(len(logged.feedback)) == "12"


def test_time_range_filter(logged):
    at = run(mon_hide_replayed=False, mon_period="Last 24 hours")
    since = datetime.now(timezone.utc) - timedelta(days=1)
    expected = sum(r.timestamp >= since for r in logged.replayed + logged.live)
    assert metrics(at)["Predictions"] == str(expected)


def test_recent_predictions_search_and_sort(logged):
    at = run(mon_hide_replayed=False, mon_search="ALICE", mon_sort="confidence")
    table = next(d.value for d in at.dataframe if "band" in d.value.columns)
    assert set(table["user"]) == {"alice"} and len(table) == 3
    ok = sorted((r for r in logged.live if r.ok), key=lambda r: -r.confidence)
    assert table["request_id"].tolist()[:2] == [r.request_id for r in ok]
    assert table["status"].tolist()[2] == "error"  # no confidence: sorted last
    # each row's own thumbnail (WebP data URL), fetched for the shown rows only; none for the text file
    assert table["photo"].str.startswith("data:image/webp;base64,").tolist() == [True, True, False]
    bands = table["band"].tolist()[:2]
    assert bands == [("high" if r.confidence >= 0.8 else "medium" if r.confidence >= 0.5 else "low") for r in ok]


def test_empty_store_explains_how_to_get_data(home):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No predictions logged yet" in i.value for i in at.info)


@pytest.mark.slow
def test_replay_button_needs_the_admin_token_then_logs_tagged_traffic(home, food10, monkeypatch):
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("NUTRILEARN_REPLAY_ROOT", str(food10))
    at = AppTest.from_file(PAGE, default_timeout=300).run()
    button = next(b for b in at.button if b.label == "Replay")
    assert button.disabled  # no token typed yet
    at.text_input(key="mon_replay_token").set_value("wrong").run()
    assert next(b for b in at.button if b.label == "Replay").disabled
    at.text_input(key="mon_replay_token").set_value("s3cret").run()
    at.text_input(key="mon_replay_dir").set_value("test")  # relative to the root; form fields go with the submit
    at.number_input(key="mon_replay_n").set_value(6)
    at.number_input(key="mon_replay_share").set_value(0.5)
    next(b for b in at.button if b.label == "Replay").click().run()
    assert not at.exception, at.exception
    assert any("Replayed 6 predictions" in s.value and "3 with feedback" in s.value for s in at.success)
    assert any("6 replayed predictions are hidden" in i.value for i in at.info)
    at.toggle(key="mon_hide_replayed").set_value(False).run()
    assert metrics(at)["Predictions"] == "6"


@pytest.mark.parametrize("where", ["..", "photos/../../elsewhere", "ABSOLUTE", "photos/link-out", ""])
def test_replay_panel_refuses_folders_outside_the_replay_root(home, monkeypatch, where):
    """Only class folders under NUTRILEARN_REPLAY_ROOT are read: `..`, an absolute path
    elsewhere and a symlink leading out are refused with a message, before any photo is read."""
    root, elsewhere = home / "replay-root", home / "elsewhere"
    (root / "photos").mkdir(parents=True)
    (elsewhere / "secret").mkdir(parents=True)
    (elsewhere / "secret" / "x.jpg").write_bytes(b"not for the panel")
    (root / "photos" / "link-out").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("NUTRILEARN_REPLAY_ROOT", str(root))
    monkeypatch.setattr("nutrilearn.replay.replay", lambda *a, **k: pytest.fail("replay must not run"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert any(str(root) in c.value and "NUTRILEARN_REPLAY_ROOT" in c.value for c in at.caption)
    at.text_input(key="mon_replay_token").set_value("s3cret").run()
    at.text_input(key="mon_replay_dir").set_value(str(elsewhere) if where == "ABSOLUTE" else where)
    next(b for b in at.button if b.label == "Replay").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    if where:
        assert any(e.startswith("Refused:") and "outside the replay photo root" in e and str(root) in e
                   for e in errors), errors
    else:
        assert any("Give a photos folder inside" in e for e in errors), errors
    assert not at.success


def test_auto_refresh_watcher_runs(logged):
    at = run(mon_auto_refresh="every 30 s")
    assert any(c.value.startswith("Auto-refresh every 30 s; last checked") for c in at.caption)
