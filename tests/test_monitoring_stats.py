"""Monitoring statistics against independent computations on a hand-made set of records.

Expected values are written out by hand or recomputed here with plain Python/numpy over
the records themselves, never with the pandas code path under test.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from nutrilearn.monitoring import (
    Filters,
    accuracy_by_version,
    by_user,
    confidence_band,
    confidence_by_version,
    confidence_histogram,
    confidence_summary,
    daily_trends,
    daily_volume,
    feedback_summary,
    filter_options,
    filter_predictions,
    join_feedback,
    overview,
    prepare,
    recent,
    top_foods,
)
from nutrilearn.tracking.records import FeedbackRecord, PredictionRecord, rows_to_table

UTC = timezone.utc
DAY1 = datetime(2026, 11, 20, tzinfo=UTC)


def pred(i: int, when: datetime, user: str, version: str = "1", label: str | None = None,
         conf: float | None = None, status: str = "ok", source: str = "app", error_type: str | None = None,
         ms: tuple[float, float, float] = (5.0, 10.0, 20.0)) -> PredictionRecord:
    """One record; an error keeps only its decode time, like the pipeline's."""
    decode, prep, infer = ms
    ok = status == "ok"
    return PredictionRecord(
        request_id=f"req{i:02d}", timestamp=when, user=user, model_name="nutrilearn-food-classifier",
        model_version=version, model_alias="champion", status=status, source=source,
        filename=f"IMG_{i:02d}.jpg", error_type=error_type, error_message="boom" if not ok else None,
        label=label if ok else None, confidence=conf if ok else None, is_food=(label != "not_food") if ok else None,
        decode_ms=decode, preprocess_ms=prep if ok else None, inference_ms=infer if ok else None,
        total_ms=decode + prep + infer if ok else decode,
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY1 + timedelta(days=day, hours=hour, minutes=minute)


RECORDS = [
    # day 0 (2026-11-20)
    pred(0, at(0, 8), "alice", "1", "pizza", 0.9),
    pred(1, at(0, 9), "alice", "1", "pizza", 0.7, ms=(6.0, 11.0, 30.0)),
    pred(2, at(0, 12), "bob", "1", "burrito", 0.4, ms=(4.0, 9.0, 25.0)),
    pred(3, at(0, 12, 30), "bob", "1", status="error", error_type="not_an_image", ms=(1.0, 0, 0)),
    pred(4, at(0, 19), "carol", "2", "not_food", 0.6, ms=(7.0, 12.0, 22.0)),
    # day 1: no traffic at all
    # day 2 (2026-11-22)
    pred(5, at(2, 7), "alice", "2", "bagel", 0.95, ms=(5.0, 8.0, 21.0)),
    pred(6, at(2, 8), "carol", "2", "pizza", 0.55, ms=(5.0, 9.0, 60.0)),
    pred(7, at(2, 8, 1), "carol", "2", status="error", error_type="model_error", ms=(3.0, 0, 0)),
    pred(8, at(2, 13), "dave", "1", "burrito", 0.3, source="replay", ms=(5.0, 10.0, 23.0)),
    pred(9, at(2, 18), "alice", "1", "espresso", 0.8, ms=(5.0, 10.0, 24.0)),
    pred(10, at(2, 20), "bob", "2", "bagel", 0.5, ms=(9.0, 15.0, 26.0)),
]
LIVE = [r for r in RECORDS if r.source != "replay"]
FEEDBACK = [
    FeedbackRecord("req00", at(0, 8, 5), "alice", "pizza", "pizza"),
    FeedbackRecord("req02", at(0, 13), "bob", "breakfast_burrito", "burrito"),
    FeedbackRecord("req05", at(2, 7, 2), "alice", "bagel", "bagel"),
    FeedbackRecord("req06", at(2, 8, 5), "carol", "pizza", "pizza"),
    FeedbackRecord("req06", at(2, 9), "carol", "trifle", "pizza"),  # changed their mind: latest wins
    FeedbackRecord("req08", at(2, 13, 1), "dave", "burrito", "burrito", source="replay"),
    FeedbackRecord("nobody", at(2, 14), "erin", "pizza", "pizza"),  # no such prediction
]


def frame(records) -> pd.DataFrame:
    return pd.DataFrame([r.to_row() for r in records])


@pytest.fixture
def predictions() -> pd.DataFrame:
    return frame(RECORDS)


@pytest.fixture
def feedback() -> pd.DataFrame:
    return pd.DataFrame([f.to_row() for f in FEEDBACK])


@pytest.fixture
def live(predictions) -> pd.DataFrame:
    return filter_predictions(predictions, Filters())


def ok_conf(records) -> list[float]:
    return [r.confidence for r in records if r.status == "ok"]


# ---------------------------------------------------------------------------- filtering

def test_replayed_traffic_is_hidden_by_default_and_shown_on_request(predictions):
    assert set(filter_predictions(predictions)["request_id"]) == {r.request_id for r in LIVE}
    everything = filter_predictions(predictions, Filters(hide_replayed=False))
    assert set(everything["request_id"]) == {r.request_id for r in RECORDS}


@pytest.mark.parametrize("filters", [
    Filters(start=at(2, 0)),
    Filters(start=at(0, 9), end=at(2, 8)),  # start inclusive, end exclusive
    Filters(model_versions=("2",), hide_replayed=False),
    Filters(users=("alice", "dave"), hide_replayed=False),
    Filters(users=("alice", "dave")),
    Filters(start=at(0, 10), model_versions=("1",), users=("bob",)),
])
def test_filters_match_a_plain_python_selection(predictions, filters):
    expected = {
        r.request_id for r in RECORDS
        if (filters.start is None or r.timestamp >= filters.start)
        and (filters.end is None or r.timestamp < filters.end)
        and (not filters.model_versions or r.model_version in filters.model_versions)
        and (not filters.users or r.user in filters.users)
        and not (filters.hide_replayed and r.source == "replay")
    }
    assert set(filter_predictions(predictions, filters)["request_id"]) == expected


def test_naive_times_are_taken_as_utc(predictions):
    naive = Filters(start=at(0, 9).replace(tzinfo=None), end=at(2, 8).replace(tzinfo=None))
    aware = Filters(start=at(0, 9), end=at(2, 8))
    assert filter_predictions(predictions, naive)["request_id"].tolist() == \
        filter_predictions(predictions, aware)["request_id"].tolist()


def test_last_period_counts_back_from_now():
    now = at(2, 12)
    f = Filters.last(timedelta(days=1), now=now, users=("bob",))
    assert f.start == at(1, 12) and f.users == ("bob",)
    assert Filters.last(None).start is None


def test_filter_options(predictions):
    opts = filter_options(predictions)
    assert opts == {"model_versions": ["1", "2"], "users": ["alice", "bob", "carol", "dave"], "replayed": 1,
                    "shadow": 0}


def test_reader_shaped_frame_gives_the_same_figures(predictions):
    """Arrow-backed strings (what the reader returns) and Python objects agree."""
    arrow = rows_to_table([r.to_row() for r in RECORDS], "predictions").to_pandas()
    a, b = filter_predictions(predictions), filter_predictions(arrow)
    assert overview(a) == overview(b)
    pd.testing.assert_frame_equal(top_foods(a), top_foods(b))
    pd.testing.assert_frame_equal(by_user(a), by_user(b))
    # prepared once, then filtered again and again: same answer
    assert overview(filter_predictions(prepare(arrow))) == overview(a)


# ----------------------------------------------------------------------------- overview

def test_overview(live):
    ov = overview(live)
    assert (ov.total, ov.ok, ov.errors) == (10, 8, 2)
    assert ov.error_rate == pytest.approx(2 / 10)
    assert ov.mean_confidence == pytest.approx(np.mean(ok_conf(LIVE)))
    assert ov.mean_confidence == pytest.approx((0.9 + 0.7 + 0.4 + 0.6 + 0.95 + 0.55 + 0.8 + 0.5) / 8)
    assert ov.unique_users == 3  # dave only replayed
    assert ov.unique_foods == 4  # pizza, burrito, bagel, espresso (not_food is not a food)
    assert ov.not_food == 1 and ov.replayed == 0
    assert (ov.first, ov.last) == (pd.Timestamp(at(0, 8)), pd.Timestamp(at(2, 20)))


def test_overview_of_nothing_is_empty_not_an_error(predictions):
    ov = overview(filter_predictions(predictions, Filters(users=("nobody",))))
    assert ov.total == 0 and np.isnan(ov.error_rate) and np.isnan(ov.mean_confidence) and ov.first is None


# ------------------------------------------------------------------------------ volumes

def test_top_foods(live):
    foods = [r.label for r in LIVE if r.status == "ok" and r.label != "not_food"]
    counts = Counter(foods)
    top = top_foods(live, n=2)
    assert top["label"].tolist() == ["pizza", "bagel"]  # 3, then 2 (bagel before burrito by name on ties)
    assert top["predictions"].tolist() == [counts["pizza"], counts["bagel"]]
    assert top["share"].tolist() == pytest.approx([3 / 7, 2 / 7])
    assert top["mean_confidence"].tolist() == pytest.approx([np.mean([0.9, 0.7, 0.55]), np.mean([0.95, 0.5])])
    assert top["food"].iloc[0] == "Pizza"
    assert len(top_foods(live, n=10)) == len(counts)


def test_daily_volume_includes_quiet_days(live):
    vol = daily_volume(live)
    assert vol["day"].tolist() == [pd.Timestamp(DAY1 + timedelta(days=d)) for d in range(3)]
    assert vol["predictions"].tolist() == [5, 0, 5]
    assert vol["errors"].tolist() == [1, 0, 1]


def test_by_user(live):
    table = by_user(live).set_index("user")
    assert table.index.tolist() == ["alice", "bob", "carol"]  # 4, 3, 3 predictions
    for user in ("alice", "bob", "carol"):
        mine = [r for r in LIVE if r.user == user]
        conf = ok_conf(mine)
        row = table.loc[user]
        assert row["predictions"] == len(mine)
        assert row["errors"] == sum(r.status == "error" for r in mine)
        assert row["mean_confidence"] == pytest.approx(np.mean(conf))
        assert (row["min_confidence"], row["max_confidence"]) == (min(conf), max(conf))
        assert row["last_seen"] == pd.Timestamp(max(r.timestamp for r in mine))


# ------------------------------------------------------------------------------- recent

def test_recent_is_newest_first_with_bands_and_limit(live):
    rows = recent(live, limit=3)
    assert rows["request_id"].tolist() == ["req10", "req09", "req07"]
    assert rows["band"].tolist() == ["medium", "high", None]  # 0.5 is medium, 0.8 high, an error has none
    assert rows["latency_ms"].tolist() == pytest.approx([50.0, 39.0, 3.0])
    assert rows["food"].iloc[1] == "espresso" or rows["food"].iloc[1].lower() == "espresso"


def test_recent_sorts_by_any_column(live):
    by_conf = recent(live, sort_by="confidence", descending=False)
    expected = sorted((r for r in LIVE if r.confidence is not None), key=lambda r: r.confidence)
    assert by_conf["request_id"].tolist()[:8] == [r.request_id for r in expected]
    assert by_conf["confidence"].iloc[8:].isna().all()  # errors last
    by_latency = recent(live, sort_by="latency_ms")
    assert by_latency["request_id"].iloc[0] == "req06"  # 74 ms
    with pytest.raises(ValueError):
        recent(live, sort_by="embedding")


@pytest.mark.parametrize("search, expected", [
    ("PIZ", {"req00", "req01", "req06"}),  # case-insensitive, food label
    ("carol", {"req04", "req06", "req07"}),  # user
    ("model_err", {"req07"}),  # error type
    ("img_09", {"req09"}),  # file name
    ("error", {"req03", "req07"}),  # status (and error types)
    (".*", set()),  # a literal, not a regex
    ("' or 1=1 --", set()),  # never spliced into a query
    ("", {r.request_id for r in LIVE}),
])
def test_recent_search_is_a_literal_substring(live, search, expected):
    assert set(recent(live, search=search)["request_id"]) == expected


def test_confidence_band_edges():
    s = pd.Series([0.0, 0.4999, 0.5, 0.7999, 0.8, 1.0, np.nan])
    assert confidence_band(s).tolist() == ["low", "low", "medium", "medium", "high", "high", None]
    assert confidence_band(s, low=0.3, high=0.9).tolist()[:3] == ["low", "medium", "medium"]


# --------------------------------------------------------------------------- confidence

def test_confidence_summary(live):
    c = np.array(ok_conf(LIVE))
    s = confidence_summary(live, low_threshold=0.6)
    assert s.count == 8
    assert s.mean == pytest.approx(c.mean())
    assert s.median == pytest.approx(np.median(c))
    assert s.std == pytest.approx(np.std(c, ddof=1))
    assert s.low_share == pytest.approx(3 / 8)  # 0.4, 0.55, 0.5 are below 0.6 (0.6 itself is not)


def test_confidence_by_version(live):
    table = confidence_by_version(live, low_threshold=0.5).set_index("model_version")
    for version in ("1", "2"):
        c = np.array(ok_conf(r for r in LIVE if r.model_version == version))
        row = table.loc[version]
        assert row["count"] == len(c)
        assert row["mean"] == pytest.approx(c.mean())
        assert row["median"] == pytest.approx(np.median(c))
        assert row["std"] == pytest.approx(np.std(c, ddof=1))
        assert row["low_share"] == pytest.approx(np.mean(c < 0.5))


@pytest.mark.parametrize("bins", [1, 4, 10, 20, 7])
def test_histogram_matches_numpy_per_version(bins):
    conf = [0.0, 0.05, 0.15, 0.25, 0.3, 0.5, 0.7, 0.75, 0.95, 1.0]  # edges and both ends included
    records = [pred(i, at(0, 8, i), "u", version="1" if i % 3 else "2", label="pizza", conf=c)
               for i, c in enumerate(conf)]
    hist = confidence_histogram(filter_predictions(frame(records)), bins=bins)
    for version in ("1", "2"):
        mine = np.array([r.confidence for r in records if r.model_version == version])
        counts, edges = np.histogram(mine, bins=bins, range=(0.0, 1.0))
        part = hist[hist["model_version"] == version]
        assert part["count"].tolist() == counts.tolist()
        assert part["bin_start"].to_numpy() == pytest.approx(edges[:-1])
        assert part["bin_end"].to_numpy() == pytest.approx(edges[1:])
        assert part["share"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        confidence_histogram(filter_predictions(frame(records)), bins=0)


# ---------------------------------------------------------------------- feedback, trends

def test_feedback_join_latest_wins_and_respects_filters(live, feedback):
    joined = join_feedback(live, feedback).set_index("request_id")
    assert sorted(joined.index) == ["req00", "req02", "req05", "req06"]  # replayed req08 is hidden
    assert joined.loc["req06", "true_label"] == "trifle"
    assert joined["correct"].to_dict() == {"req00": True, "req02": False, "req05": True, "req06": False}
    s = feedback_summary(join_feedback(live, feedback))
    assert (s.feedback, s.correct, s.accuracy) == (4, 2, 0.5)


def test_accuracy_by_version(predictions, feedback):
    everything = filter_predictions(predictions, Filters(hide_replayed=False))
    table = accuracy_by_version(join_feedback(everything, feedback)).set_index("model_version")
    # v1: req00 right, req02 wrong, req08 right; v2: req05 right, req06 wrong
    assert table.loc["1"].tolist() == [3, 2, pytest.approx(2 / 3)]
    assert table.loc["2"].tolist() == [2, 1, 0.5]


def test_daily_trends(live, feedback):
    trends = daily_trends(live, join_feedback(live, feedback))
    assert trends["day"].tolist() == [pd.Timestamp(DAY1 + timedelta(days=d)) for d in range(3)]
    assert trends["predictions"].tolist() == [5, 0, 5]
    day0 = ok_conf(r for r in LIVE if r.timestamp < at(1, 0))
    day2 = ok_conf(r for r in LIVE if r.timestamp >= at(2, 0))
    assert trends["mean_confidence"].iloc[0] == pytest.approx(np.mean(day0))
    assert np.isnan(trends["mean_confidence"].iloc[1])
    assert trends["mean_confidence"].iloc[2] == pytest.approx(np.mean(day2))
    assert trends["error_rate"].iloc[[0, 2]].tolist() == pytest.approx([1 / 5, 1 / 5])
    assert trends["feedback"].tolist() == [2, 0, 2]
    assert trends["realized_accuracy"].iloc[0] == pytest.approx(0.5)  # req00 right, req02 wrong
    assert np.isnan(trends["realized_accuracy"].iloc[1])
    assert trends["realized_accuracy"].iloc[2] == pytest.approx(0.5)  # req05 right, req06 wrong
    no_feedback = daily_trends(live)
    assert no_feedback["feedback"].tolist() == [0, 0, 0] and no_feedback["realized_accuracy"].isna().all()


def test_challenger_shadow_records_are_left_out_unless_asked_and_share_feedback(feedback):
    """A challenger's shadow answer is not another request, but it is judged by the same feedback."""
    import dataclasses

    shadow = [dataclasses.replace(r, request_id=r.request_id + ".challenger", model_version="3",
                                  model_alias="challenger", label="pizza", confidence=0.99)
              for r in LIVE if r.status == "ok"]
    both = frame(RECORDS + shadow)
    assert filter_options(both)["shadow"] == len(shadow) == 8
    served = filter_predictions(both)
    assert overview(served) == overview(filter_predictions(frame(RECORDS)))
    compared = filter_predictions(both, Filters(include_shadow=True))
    assert len(compared) == 10 + 8
    assert confidence_by_version(compared)["model_version"].tolist() == ["1", "2", "3"]
    table = accuracy_by_version(join_feedback(compared, feedback)).set_index("model_version")
    # feedback on req00 (pizza), req02 (breakfast_burrito), req05 (bagel), req06 (trifle): v3 said pizza to all
    assert table.loc["3"].tolist() == [4, 1, 0.25]


def test_every_figure_copes_with_an_empty_view():
    empty = filter_predictions(pd.DataFrame())
    assert overview(empty).total == 0
    assert top_foods(empty).empty and daily_volume(empty).empty and by_user(empty).empty
    assert recent(empty, search="x").empty and confidence_histogram(empty).empty
    assert confidence_summary(empty).count == 0 and confidence_by_version(empty).empty
    joined = join_feedback(empty, None)
    assert joined.empty and feedback_summary(joined).feedback == 0 and accuracy_by_version(joined).empty
    assert daily_trends(empty, joined).empty
