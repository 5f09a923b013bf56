"""The labelling queue on real photos: it asks about the least sure answers, the photos of
a food that newly came in, and the champion/challenger disagreements; never about a photo
already labelled; its labels are feedback records that realized accuracy reads; the CLI's
JSON shape. Stores: ``label_store`` (ribs arrive in the last day) and issue 11's (a
challenger in shadow, 30% feedback)."""

from __future__ import annotations

import json

import pytest

from nutrilearn.auth import AccessDenied, Identity
from nutrilearn.monitoring import label_queue as lq
from tests.conftest import ROOT
from tests.issue11_store import TOKEN

pytestmark = [pytest.mark.food10]


@pytest.fixture
def in_store(label_store, monkeypatch, classifier):
    from nutrilearn import serving

    monkeypatch.setenv("NUTRILEARN_HOME", str(label_store["home"]))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    for var in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(serving, "load_classifier", lambda *a, **k: classifier)
    return label_store


@pytest.fixture
def reader(in_store):
    from nutrilearn.config import Settings
    from nutrilearn.tracking.reader import PredictionReader

    r = PredictionReader(Settings.from_env())
    r.refresh()
    yield r
    r.close()


def test_the_queue_asks_about_unsure_answers_and_the_new_food(in_store, reader):
    queue = lq.build_queue(reader, 20, days=2)
    assert len(queue.items) == 20 and queue.answers == in_store["n_current"]
    assert queue.mean_confidence < queue.window_mean_confidence - 0.05, (queue.mean_confidence,
                                                                         queue.window_mean_confidence)
    scores = [i.score for i in queue.items]
    assert scores == sorted(scores, reverse=True)
    truth = {r.request_id: r.filename for r in in_store["records"]}
    assert all(i.request_id in truth for i in queue.items)  # served answers of the window only
    # the ribs' cluster grew: the queue says so for its photos
    grown = [c for c in queue.clusters.moved() if c.change > 0]
    assert grown and grown[0].change >= 0.3
    in_cluster = [i for i in queue.items if i.cluster is not None]
    assert in_cluster and all("new kind of photo" in i.reason for i in in_cluster)
    assert all(i.reason for i in queue.items)


def test_labels_are_feedback_and_leave_the_queue_for_good(in_store, reader):
    from nutrilearn.config import Settings
    from nutrilearn.monitoring import performance
    from nutrilearn.tracking.logger import PredictionLogger

    queue = lq.build_queue(reader, 5, days=2)
    before = queue.labelled  # the session's store: other tests (the Label page's) may have labelled some
    me = Identity.local("labeller")
    logger = PredictionLogger(Settings.from_env(), start=False)  # spooled: read back at once
    try:
        for item in queue.items[:3]:
            record = lq.record_label(logger, me, item, item.top5_labels[1])  # the second guess: a correction
            assert record.user == "labeller" and record.predicted_label == item.label
        with pytest.raises(AccessDenied):  # a plain user may not label other users' photos
            lq.record_label(logger, Identity("u1", "Ursula", roles=frozenset({"user"}), provider="oidc"),
                            queue.items[3], queue.items[3].label)
        with pytest.raises(ValueError, match="not a food label"):
            lq.record_label(logger, me, queue.items[3], "'; DROP TABLE feedback; --")
    finally:
        logger.spool.close()
    labelled = {i.request_id for i in queue.items[:3]}
    again = lq.build_queue(reader, 200, days=2)
    assert not labelled & {i.request_id for i in again.items}  # never asked twice
    assert again.labelled == before + 3
    if before == 0:  # this test alone on the store: the window's only labels are corrections
        assert again.realized_accuracy == 0.0
    assert set(lq.labelled_ids(reader, queue.start)) >= labelled
    # realized accuracy sees them: three corrections, so nothing right among them
    truth = performance.labelled(reader.predictions(start=queue.start), reader.feedback())
    mine = truth[truth["request_id"].isin(labelled)]
    assert len(mine) == 3 and not mine["correct"].any()


def test_label_queue_cli_json(in_store, capsys):
    from nutrilearn.cli import main

    capsys.readouterr()
    assert main(["label-queue", "--n", "7", "--days", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    items = out["items"]
    assert len(items) == 7
    for item in items:
        assert {"request_id", "label", "confidence", "reason"} <= set(item)
        assert isinstance(item["request_id"], str) and isinstance(item["label"], str)
        assert 0.0 <= item["confidence"] <= 1.0 and item["reason"]
    assert out["queue_mean_confidence"] < out["window_mean_confidence"]
    assert main(["label-queue", "--n", "3", "--days", "2"]) == 0
    text = capsys.readouterr().out
    assert "to label of" in text and items[0]["request_id"] in text


@pytest.fixture
def in_issue11(issue11_store, monkeypatch, classifier):
    from nutrilearn import serving

    monkeypatch.setenv("NUTRILEARN_HOME", str(issue11_store["home"]))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    for var in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(serving, "load_classifier", lambda *a, **k: classifier)
    return issue11_store


def test_disagreements_are_queued_and_labelled_photos_never_are(in_issue11):
    from nutrilearn.config import Settings
    from nutrilearn.tracking.reader import PredictionReader

    reader = PredictionReader(Settings.from_env())
    try:
        reader.refresh()
        queue = lq.build_queue(reader, 40, days=2, reference_days=None)
        labelled = set(reader.feedback()["request_id"])
        assert labelled and not labelled & {i.request_id for i in queue.items}
        assert queue.labelled > 0 and queue.answers > queue.labelled
        split = [i for i in queue.items if i.challenger_label and i.challenger_label != i.label]
        assert split and all("challenger" in i.reason for i in split)
        assert not any(i.request_id.endswith(".challenger") for i in queue.items)
        assert queue.mean_confidence < queue.window_mean_confidence
    finally:
        reader.close()


def test_label_page_confirms_with_one_click_and_moves_on(in_store):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "label.py"), default_timeout=180)
    at.session_state["user"] = "page-labeller"
    at.session_state["label_days"] = 2
    at.run()
    assert not at.exception, at.exception
    whys = [c.value for c in at.caption if c.value.startswith("Why: ")]
    assert len(whys) == 10 and any("new kind of photo" in w for w in whys)
    first = next(b for b in at.button if b.key and b.key.startswith("yes-"))
    rid = first.key.removeprefix("yes-")
    first.click().run()
    assert not at.exception, at.exception
    assert list(at.session_state["label_done"]) == [rid]
    assert not any(b.key == f"yes-{rid}" for b in at.button)  # it left the queue
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labelled this session"] == "1"
    reader = _reader_now()
    try:
        fb = reader.feedback()
    finally:
        reader.close()
    mine = fb[fb["request_id"] == rid]
    assert len(mine) == 1 and mine["user"].iloc[0] == "page-labeller" and mine["kind"].iloc[0] == "confirmed"


def _reader_now():
    from nutrilearn.config import Settings
    from nutrilearn.tracking.reader import PredictionReader

    return PredictionReader(Settings.from_env())


def test_a_label_keeps_its_thumbnail_for_training_when_asked(home, monkeypatch):
    """``train --base`` reads kept photos: with NUTRILEARN_KEEP_FEEDBACK_PHOTOS a queue label
    keeps the thumbnail under its label; "not a recognised food" is kept as feedback only."""
    from datetime import datetime, timezone

    from nutrilearn.config import Settings
    from nutrilearn.vision.vocabulary import NOT_FOOD
    from tests.conftest import image_bytes

    monkeypatch.setenv("NUTRILEARN_KEEP_FEEDBACK_PHOTOS", "1")
    monkeypatch.setenv("NUTRILEARN_FEEDBACK_DIR", str(home / "kept"))

    class Sink(list):
        def submit_feedback(self, record):
            self.append(record)

    def item(rid: str, label: str) -> lq.QueueItem:
        return lq.QueueItem(rid, datetime(2026, 11, 29, tzinfo=timezone.utc), "u", "1", label, 0.3,
                            [label, "pizza"], [0.3, 0.2], ("unsure",), 0.7)

    sink, me = Sink(), Identity.local("labeller")
    thumb = image_bytes(size=(128, 96), fmt="WEBP")
    lq.record_label(sink, me, item("a" * 32, "hamburger"), "pizza", settings=Settings.from_env(), photo=thumb)
    assert (home / "kept" / "pizza" / f"{'a' * 32}.webp").read_bytes() == thumb
    lq.record_label(sink, me, item("b" * 32, NOT_FOOD), NOT_FOOD, settings=Settings.from_env(), photo=thumb)
    assert [r.label for r in sink] == ["pizza", NOT_FOOD] and [r.kind for r in sink] == ["corrected", "confirmed"]
    assert not list((home / "kept").glob(f"*/{'b' * 32}.*"))
