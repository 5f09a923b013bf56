"""The Monitoring figures computed in the engine (``monitoring.aggregates``) equal their pandas
twins (``stats``, ``health``, ``versions``) on the same records, whatever the filters."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nutrilearn import monitoring as mon
from nutrilearn.monitoring import aggregates as agg
from nutrilearn.monitoring import versions as mv
from nutrilearn.monitoring.filters import Filters
from nutrilearn.tracking.reader import PredictionReader
from nutrilearn.tracking.records import SHADOW_SUFFIX
from tracking_fixtures import T0, make_feedback, make_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest_plugins = ["tracking_fixtures"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, mlflow_db):
    """260 predictions over four UTC days (two versions, errors of two types, shadows,
    replayed, confidences on bin edges, not_food), feedback on some; 220 flushed."""
    import os

    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger
    from tracking_fixtures import FAST

    home = tmp_path_factory.mktemp("agg")
    env = {"NUTRILEARN_HOME": str(home), "MLFLOW_TRACKING_URI": mlflow_db,
           "NUTRILEARN_SPOOL_DIR": str(home / "spool"), "NUTRILEARN_PREDICTIONS_EXPERIMENT": "predictions-agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings.from_env()
        logger = PredictionLogger(settings, batch_max_records=30, start=False, **FAST)
        records = []
        for i in range(260):
            rec = make_record(i, model_version="2" if i >= 130 else "1", source="replay" if i % 11 == 10 else "app",
                              when=T0 + timedelta(minutes=21 * i), user=f"u{i % 4}")
            if rec.status == "ok":
                rec.confidence = [0.3, 0.7, 0.05, 1.0, 0.55][i % 5] if i % 3 == 0 else rec.confidence
                if i % 23 == 5:
                    rec.label = "not_food"
            else:
                rec.error_type = None if i % 2 else "UnreadableImage"
            if i % 13 == 12:
                rec.request_id += SHADOW_SUFFIX
            records.append(rec)
            logger.submit(rec)
            if i % 17 == 3 and rec.status == "ok":  # a challenger's answer to the same photo
                twin = make_record(1000 + i, model_version="3", when=rec.timestamp, user=rec.user)
                twin.request_id, twin.status = rec.request_id + SHADOW_SUFFIX, "ok"
                logger.submit(twin)
            if i == 219:
                assert logger.flush(timeout=120)
        for rec in records[::5]:
            served = rec.request_id.removesuffix(SHADOW_SUFFIX)
            fb = make_feedback(rec, label=rec.label if rec.timestamp.minute % 2 else "bagel")
            fb.request_id = served
            logger.submit_feedback(fb)
        assert logger.flush(timeout=120)
        reader = PredictionReader(settings)
        reader.refresh()
        yield reader
        reader.close()
        logger.close(timeout=0.0)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


FILTERS = [
    Filters(),
    Filters(hide_replayed=False, include_shadow=True),
    Filters(start=T0 + timedelta(hours=30), end=T0 + timedelta(days=3, hours=2), model_versions=("2",)),
    Filters(users=("u1", "u3"), hide_replayed=False),
]


def _frames(reader, f):
    data = mon.prepare(reader.predictions(refresh=False))
    return mon.filter_predictions(data, f), reader.feedback(refresh=False)


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Text as objects (categoricals and Arrow strings compare as their values)."""
    df = df.reset_index(drop=True)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(df[c].dtype):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    pd.testing.assert_frame_equal(_plain(a), _plain(b), check_dtype=False, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("f", FILTERS)
def test_engine_figures_equal_the_pandas_ones(store, f):
    h = store.history
    df, feedback = _frames(store, f)
    assert len(df) > 20
    _same(agg.top_foods(h, f, 5), mon.top_foods(df, 5))
    _same(agg.daily_volume(h, f), mon.daily_volume(df))
    _same(agg.by_user(h, f), mon.by_user(df))
    for bins in (10, 20, 7):
        _same(agg.confidence_histogram(h, f, bins), mon.confidence_histogram(df, bins))
    assert np.allclose(list(agg.confidence_summary(h, f, 0.4).__dict__.values()),
                       list(mon.confidence_summary(df, 0.4).__dict__.values()), equal_nan=True)
    _same(agg.confidence_by_version(h, f, 0.4), mon.confidence_by_version(df, 0.4))
    _same(agg.latency_summary(h, f), mon.latency_summary(df))
    _same(agg.errors_by_type(h, f), mon.errors_by_type(df))
    joined = mon.join_feedback(df, feedback)
    assert len(joined) > 0
    assert agg.feedback_summary(h, f, feedback) == mon.feedback_summary(joined)
    _same(agg.accuracy_by_version(h, f, feedback), mv.accuracy_by_version(joined))


def test_edge_confidences_land_in_numpys_bins(store):
    f = Filters(hide_replayed=False)
    df, _ = _frames(store, f)
    hist = agg.confidence_histogram(store.history, f, 10)
    assert (df["confidence"] == 0.3).any() and (df["confidence"] == 1.0).any()  # values on float edges
    _same(hist, mon.confidence_histogram(df, 10))


@pytest.mark.parametrize("f", FILTERS)
def test_engine_overview_health_and_trends_equal_the_pandas_ones(store, f):
    h = store.history
    df, feedback = _frames(store, f)
    _same(pd.DataFrame([agg.overview(h, f).__dict__]), pd.DataFrame([mon.overview(df).__dict__]))
    window = Filters(start=f.start, end=f.end, hide_replayed=False, include_shadow=True)
    everything = mon.filter_predictions(mon.prepare(store.predictions(refresh=False)), window)
    assert agg.filter_options(h, window) == mon.filter_options(everything)
    t, expected = agg.traffic(h, f), mon.traffic(df)
    assert (t.requests, t.peak_rpm, t.peak_minute) == (expected.requests, expected.peak_rpm, expected.peak_minute)
    assert t.mean_rpm == pytest.approx(expected.mean_rpm) and t.span_minutes == pytest.approx(expected.span_minutes)
    for freq in ("1min", "15min", "1h"):
        _same(agg.request_rate(h, f, freq), mon.request_rate(df, freq))
    strict = mon.HealthThresholds(p95_latency_ms_degraded=1.0, p95_latency_ms_unhealthy=2.0,
                                  error_rate_degraded=0.01, error_rate_unhealthy=0.5, min_requests=5)
    for thresholds in (mon.HealthThresholds(), strict):
        got = agg.assess_health(h, f, thresholds)
        want = mon.assess_health(df.astype({"error_type": object}), thresholds)
        assert (got.status, got.problems, got.notes, got.requests, got.errors) == \
            (want.status, want.problems, want.notes, want.requests, want.errors)
    assert agg.assess_health(h, f, strict).problems  # the strict thresholds are crossed: advice compared too
    _same(agg.join_feedback(h, f, feedback), mon.join_feedback(df, feedback))
    _same(agg.daily_trends(h, f, feedback), mon.daily_trends(df, mon.join_feedback(df, feedback)))


@pytest.mark.parametrize("search", ["", "u1", "UNREADABLE", "photo", "not", "nothing-like-this"])
@pytest.mark.parametrize("sort_by,descending", [("time", True), ("confidence", False), ("food", True),
                                                ("latency_ms", True), ("user", False)])
@pytest.mark.parametrize("f", [Filters(hide_replayed=False, include_shadow=True),
                               Filters(start=T0 + timedelta(days=1, hours=5), model_versions=("2",))])
def test_engine_recent_rows_equal_the_pandas_ones(store, search, sort_by, descending, f):
    df, _ = _frames(store, f)
    h = store.history
    assert agg.recent_count(h, f, search) == int(mon.search_mask(df, search).sum())
    rows = agg.recent_rows(h, f, 15, search, sort_by, descending)
    got = mon.recent(mon.prepare(rows), 15, sort_by=sort_by, descending=descending) if len(rows) else rows
    want = mon.recent(df, 15, search, sort_by, descending)
    assert list(got["request_id"] if len(rows) else []) == list(want["request_id"])


def test_engine_shadow_pairs_equal_the_pandas_ones(store):
    f = Filters(hide_replayed=False)
    df = mon.filter_predictions(mon.prepare(store.predictions(refresh=False)), Filters(hide_replayed=False,
                                                                                         include_shadow=True))
    want = mv.shadow_pairs(df)
    got = agg.shadow_pairs(store.history, f)
    assert len(want) >= 5
    _same(got, want)


def _all_figures(h, f, feedback) -> list:
    return [agg.overview(h, f), agg.filter_options(h, f), agg.top_foods(h, f, 5), agg.daily_volume(h, f),
            agg.by_user(h, f), agg.confidence_histogram(h, f, 7), agg.confidence_summary(h, f, 0.4),
            agg.confidence_by_version(h, f, 0.4), agg.latency_summary(h, f), agg.errors_by_type(h, f),
            agg.assess_health(h, f), agg.request_rate(h, f, "1h"), agg.recent_rows(h, f, 50),
            agg.recent_count(h, f), agg.recent_count(h, f, "pizza"), agg.join_feedback(h, f, feedback),
            agg.daily_trends(h, f, feedback), agg.accuracy_by_version(h, f, feedback)]


@pytest.mark.parametrize("f", FILTERS)
def test_a_windows_snapshot_answers_as_the_files_do(store, f):
    """The app's History keeps a window's rows in memory: every figure must stay the same,
    spooled rows included, and a window larger than the cap is read from the files."""
    from nutrilearn.monitoring.history import History

    feedback = store.feedback(refresh=False)
    kept = History(store.mirror, store.spool_dir, snapshots=2)
    try:
        for got, want in zip(_all_figures(kept, f, feedback), _all_figures(store.history, f, feedback)):
            if isinstance(want, pd.DataFrame):
                _same(got, want)
            elif hasattr(want, "latency"):  # a health report: its tables apart
                _same(got.latency, want.latency)
                _same(got.errors_by_type, want.errors_by_type)
                assert (got.status, got.requests, got.errors) == (want.status, want.requests, want.errors)
            elif hasattr(want, "__dict__"):  # sums in another order: floats to rounding
                for name, value in vars(want).items():
                    assert vars(got)[name] == (pytest.approx(value, nan_ok=True) if isinstance(value, float)
                                               else value), name
            else:
                assert got == want
        assert len(kept._snapshots) == 1  # one read of the window for all of them
    finally:
        kept.close()
    capped = History(store.mirror, store.spool_dir, snapshots=2, snapshot_max_rows=10)
    try:
        _same(agg.top_foods(capped, f, 5), agg.top_foods(store.history, f, 5))
        assert not capped._snapshots
    finally:
        capped.close()
