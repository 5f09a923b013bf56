"""Replay: simulated time, users and feedback around real predictions on real photos."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from nutrilearn.config import Settings
from nutrilearn.replay import (
    HOUR_WEIGHTS,
    OutsideReplayRoot,
    folder_within,
    labelled_photos,
    replay,
    simulated_times,
    user_names,
    user_weights,
)

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)  # a Friday


class Collector:
    """A sink that keeps what it is given, in order."""

    def __init__(self):
        self.records, self.feedback = [], []

    def submit(self, record):
        self.records.append(record)

    def submit_feedback(self, feedback):
        self.feedback.append(feedback)


@pytest.fixture(scope="module")
def photos(food10, tmp_path_factory) -> Path:
    """Two real classes, three photos each (links to food10, never copies in the repo)."""
    root = tmp_path_factory.mktemp("photos")
    for label in ("breakfast_burrito", "apple_pie"):
        (root / label).mkdir()
        for src in sorted((food10 / "test" / label).glob("*.jpg"))[:3]:
            (root / label / src.name).symlink_to(src)
    (root / "stray.jpg").symlink_to(src)  # not in a class folder: ignored
    return root


@pytest.fixture(scope="module")
def analyzer(classifier):
    from nutrilearn.serving import build_analyzer

    return build_analyzer(Settings.from_env(), classifier=classifier, sink=None)


# ------------------------------------------------------------------- no model needed

def test_simulated_times_stay_in_the_window_sorted_with_a_daily_rhythm():
    times = simulated_times(20_000, 14, NOW, np.random.default_rng(1))
    assert len(times) == 20_000 and times == sorted(times)
    assert all(NOW - timedelta(days=14) < t <= NOW for t in times)
    hours = Counter(t.hour for t in times)
    # dinner (19 h, weight 7.5) is far busier than 3 in the morning (weight 0.2)
    assert hours[19] > 10 * hours[3]
    expected = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
    observed = np.array([hours[h] for h in range(24)]) / 20_000
    assert np.abs(observed - expected).max() < 0.01  # weekends scale all hours alike
    weekday = sum(t.weekday() < 5 for t in times) / 10  # 10 weekdays, 4 weekend days in 14
    weekend = sum(t.weekday() >= 5 for t in times) / 4
    assert 0.6 < weekend / weekday < 0.8
    assert simulated_times(0, 3, NOW, np.random.default_rng(0)) == []


def test_users_have_a_long_tail():
    assert user_names(3) == ["replay-user-01", "replay-user-02", "replay-user-03"]
    w = user_weights(5)
    assert w.sum() == pytest.approx(1.0) and all(np.diff(w) < 0)


def test_labelled_photos_use_the_folder_name(tmp_path):
    (tmp_path / "pizza" / "deep").mkdir(parents=True)
    (tmp_path / "pizza" / "a.jpg").write_bytes(b"x")
    (tmp_path / "pizza" / "deep" / "b.PNG").write_bytes(b"x")
    (tmp_path / "pizza" / "notes.txt").write_text("x")
    (tmp_path / "loose.jpg").write_bytes(b"x")
    found = labelled_photos(tmp_path)
    assert [(p.path.name, p.label) for p in found] == [("a.jpg", "pizza"), ("b.PNG", "deep")]
    with pytest.raises(FileNotFoundError):
        labelled_photos(tmp_path / "missing")


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(days=0), dict(users=0), dict(feedback_share=1.5)])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    args = dict(n=5, days=1, users=1, feedback_share=0.0) | kwargs
    with pytest.raises(ValueError):
        replay(tmp_path, analyzer=None, **args)


# ------------------------------------------------------------- real photos, real model

@pytest.mark.food10
def test_replay_tags_spreads_and_gives_feedback(photos, analyzer):
    sink = Collector()
    result = replay(photos, n=20, days=3, users=4, feedback_share=0.25, seed=7, analyzer=analyzer,
                    sink=sink, now=NOW)
    assert result.photos_available == 6  # the stray file has no class folder
    assert result.distinct_photos <= 6 and result.predicted == result.distinct_photos  # repeats reuse
    assert sink.records == result.records and sink.feedback == result.feedback
    recs = result.records
    assert len(recs) == 20 and len({r.request_id for r in recs}) == 20
    assert all(r.source == "replay" and r.replayed for r in recs)
    assert [r.timestamp for r in recs] == sorted(r.timestamp for r in recs)
    assert all(NOW - timedelta(days=3) < r.timestamp <= NOW for r in recs)
    assert {r.user for r in recs} <= set(user_names(4))
    ok = [r for r in recs if r.ok]
    assert len(ok) == 20  # real photos all decode
    assert all(r.label and 0 < r.confidence <= 1 and r.total_ms > 0 and r.embedding for r in ok)
    # feedback: round(25% of 20) = 5 predictions, true label = the folder name
    assert len(result.feedback) == 5
    by_id = {r.request_id: r for r in recs}
    folder = {p.path.name: p.label for p in labelled_photos(photos)}
    for fb in result.feedback:
        rec = by_id[fb.request_id]
        assert fb.label == folder[rec.filename] and fb.predicted_label == rec.label
        assert fb.source == "replay" and fb.user == rec.user
        assert rec.timestamp <= fb.timestamp <= NOW
    # a repeated photo carries the same (real) prediction as its first appearance
    firsts = {}
    for r in recs:
        first = firsts.setdefault(r.filename, r)
        assert (r.label, r.confidence, r.total_ms) == (first.label, first.confidence, first.total_ms)


@pytest.mark.food10
def test_same_seed_same_traffic_and_no_reuse_predicts_each(photos, analyzer):
    a = replay(photos, n=8, days=2, users=3, feedback_share=0.5, seed=3, analyzer=analyzer, now=NOW)
    b = replay(photos, n=8, days=2, users=3, feedback_share=0.5, seed=3, analyzer=analyzer, now=NOW,
               reuse_predictions=False, batch_size=4)
    assert [(r.filename, r.timestamp, r.user) for r in a.records] == [(r.filename, r.timestamp, r.user)
                                                                       for r in b.records]
    assert [r.label for r in a.records] == [r.label for r in b.records]  # same model, same photos
    assert b.predicted == 8 and len(a.feedback) == len(b.feedback) == 4
    assert a.distinct_photos == len({r.filename for r in a.records}) < 8  # n > photos: with replacement


def test_an_analyzer_that_logs_by_itself_is_refused(photos):
    class Logging:
        sink = Collector()

    with pytest.raises(ValueError, match="without a sink"):
        replay(photos, n=2, days=1, users=1, analyzer=Logging())


@pytest.mark.food10
@pytest.mark.slow
def test_cli_replay_logs_through_the_prediction_logger(photos, home, capsys):
    """End to end: the command predicts, spools, flushes to MLflow; the reader sees it tagged."""
    from nutrilearn.cli import main
    from nutrilearn.tracking.reader import load_predictions

    code = main(["replay", "--photos", str(photos), "--n", "10", "--days", "2", "--users", "2",
                 "--feedback-share", "0.3", "--seed", "1", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    assert '"predictions": 10' in out and '"feedback": 3' in out and '"flushed": true' in out
    settings = Settings.from_env()
    df = load_predictions(settings)
    assert len(df) == 10 and set(df["source"]) == {"replay"}
    assert set(df["user"]) <= {"replay-user-01", "replay-user-02"}
    assert load_predictions(settings, include_replayed=False).empty


def test_folder_within_keeps_replay_inside_its_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "food10" / "test" / "pie").mkdir(parents=True)
    (outside / "pie").mkdir(parents=True)
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    (root / "link-in").symlink_to(root / "food10", target_is_directory=True)
    inside = (root / "food10" / "test").resolve()
    assert folder_within(root, "food10/test") == inside
    assert folder_within(root, f" {inside} ") == inside  # absolute, but inside: fine
    assert folder_within(root, "food10/test/../test") == inside
    assert folder_within(root, "link-in/test") == inside  # a link that stays inside
    assert folder_within(root, ".") == root.resolve()
    for bad in ("..", "../outside", "food10/../../outside", str(outside), "/etc", "link-out", "link-out/pie",
                "~"):
        with pytest.raises(OutsideReplayRoot, match="outside the replay photo root"):
            folder_within(root, bad)
    with pytest.raises(ValueError, match="Give a photos folder"):
        folder_within(root, "  ")


def test_labelled_photos_confined_leave_out_links_leading_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "pie").mkdir(parents=True)
    outside.mkdir()
    (root / "pie" / "a.jpg").write_bytes(b"x")
    (outside / "secret.jpg").write_bytes(b"x")
    (root / "pie" / "b.jpg").symlink_to(outside / "secret.jpg")
    assert [p.path.name for p in labelled_photos(root)] == ["a.jpg", "b.jpg"]
    assert [p.path.name for p in labelled_photos(root, confine_to=root)] == ["a.jpg"]
