"""Drift windows resolved in the engine give the same rows as ``windows.select`` on the full
frame, bring back at most ``max_rows`` rows of a time window and at most ``cap`` embeddings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nutrilearn.monitoring import drift_data, windows
from nutrilearn.tracking.reader import PredictionReader
from nutrilearn.tracking.records import SHADOW_SUFFIX
from tracking_fixtures import T0, make_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest_plugins = ["tracking_fixtures"]


@pytest.fixture
def reader(tracking, loggers):
    """240 predictions over four UTC days (versions 1 then 2, errors, shadows, replayed ones
    with early simulated times), 200 flushed and 40 still in the spool."""
    logger = loggers(tracking, batch_max_records=25, start=False)
    for i in range(240):
        replayed = i % 9 == 8
        when = T0 - timedelta(days=2) + timedelta(minutes=7 * i) if replayed else T0 + timedelta(minutes=24 * i)
        rec = make_record(i, model_version="2" if i >= 120 else "1", source="replay" if replayed else "app", when=when)
        if i % 13 == 12:
            rec.request_id += SHADOW_SUFFIX
        logger.submit(rec)
        if i == 199:
            assert logger.flush(timeout=120)
    r = PredictionReader(tracking)
    r.refresh()
    yield r
    r.close()


SPECS = ["last:50", "first:40", "days:1", "range:2026-11-28..2026-11-29", "champion:2026-11-28T03:00@30",
         "champion:2026-11-28T03:00@30,version=2", "last:5000"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("live_only", [False, True])
def test_engine_windows_hold_the_same_rows_as_the_frame_windows(reader, spec, live_only):
    raw = reader.predictions(include_replayed=not live_only)
    expected = windows.select(raw, spec, "reference")
    got = drift_data.select(reader.history, spec, "reference", live_only=live_only)
    assert expected.n >= 20
    assert list(got.frame["request_id"]) == list(expected.frame["request_id"])
    assert got.describe()["n"] == expected.n and got.describe()["start"] == expected.describe()["start"]
    assert got.frame["embedding"].notna().sum() == min(got.n, 1000)
    assert not got.frame["request_id"].str.endswith(SHADOW_SUFFIX).any()


def test_a_time_window_is_sampled_and_embeddings_capped(reader):
    full = drift_data.select(reader.history, "days:3", "current", max_rows=10_000, embeddings=10_000)
    got = drift_data.select(reader.history, "days:3", "current", max_rows=25, embeddings=7)
    assert got.n == 25 and got.params["in_window"] == full.n and got.params["sampled"] == 25
    assert set(got.frame["request_id"]) <= set(full.frame["request_id"])
    assert got.frame["timestamp"].is_monotonic_increasing
    have = got.frame.dropna(subset=["embedding"])
    assert len(have) == 7
    truth = dict(zip(full.frame["request_id"], full.frame["embedding"]))
    assert all(truth[r] == e for r, e in zip(have["request_id"], have["embedding"]))  # the rows' own embeddings
    assert full.frame["embedding"].notna().sum() == full.n  # uncapped: every row's


def test_later_leaves_the_reference_out_and_is_bounded(reader):
    ref = drift_data.select(reader.history, "first:40", "reference")
    rest = drift_data.later(reader.history, ref, max_rows=30, embeddings=5)
    assert len(rest) == 30 and not set(rest["request_id"]) & set(ref.frame["request_id"])
    assert rest["embedding"].notna().sum() == 5


@pytest.mark.parametrize("live_only", [False, True])
def test_oldest_time_is_the_first_usable_predictions(reader, live_only):
    """The Date range reference's default day (it read too few columns for its own filter)."""
    expected = windows.select(reader.predictions(include_replayed=not live_only), "first:1", "reference")
    assert drift_data.oldest_time(reader.history, live_only) == expected.frame["timestamp"].iloc[0].to_pydatetime()


@pytest.mark.parametrize("live_only", [False, True])
def test_later_from_one_pool_is_the_usable_rows_outside_the_reference(reader, live_only):
    """One sample per data version serves every reference and the replayed toggle: each
    takes the pool's rows outside its reference, less replayed ones when asked (the
    engine's own filter gives the same rows), at most max_rows, embeddings capped."""
    pool = drift_data.later_pool(reader.history, max_rows=1000)
    everything = reader.predictions(include_replayed=not live_only)
    usable_ids = set(windows.usable(everything)["request_id"])
    for spec in ("first:40", "last:60", "days:1"):
        ref = drift_data.select(reader.history, spec, "reference", live_only=live_only)
        rest = drift_data.later_from(pool, ref, live_only=live_only, embeddings=7)
        assert set(rest["request_id"]) == usable_ids - set(ref.frame["request_id"])  # small: all of them
        assert rest["timestamp"].is_monotonic_increasing and rest["embedding"].notna().sum() == 7
        few = drift_data.later_from(pool, ref, live_only=live_only, max_rows=25, embeddings=100)
        assert len(few) == 25 and set(few["request_id"]) <= set(rest["request_id"])
        assert few["embedding"].notna().all()  # fewer rows than the cap: every row keeps its own
        truth = dict(zip(pool["request_id"], pool["embedding"]))
        assert all(truth[r] == e for r, e in zip(few["request_id"], few["embedding"]))
