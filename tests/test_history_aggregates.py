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
    kept = History(store.mirror, store.spool_dir, hold_rows=True)
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
        assert kept.held_rows() > 0  # answered from memory
    finally:
        kept.close()
    capped = History(store.mirror, store.spool_dir, hold_rows=True, snapshot_max_rows=10)
    try:
        _same(agg.top_foods(capped, f, 5), agg.top_foods(store.history, f, 5))
        assert capped.held_rows() == 0
    finally:
        capped.close()


# Filters over one set of held rows: every kind the page's sidebar can choose, alone and
# together, over windows whose edges fall inside days (a time check on held rows) or at midnight.
MEMORY_FILTERS = [
    Filters(hide_replayed=False, include_shadow=True),  # every row
    Filters(),
    Filters(include_shadow=True),
    Filters(hide_replayed=False),
    Filters(model_versions=("2",)),
    Filters(model_versions=("3",), include_shadow=True),  # the challenger's shadow answers alone
    Filters(model_versions=("3",)),  # none: shadows left out
    Filters(users=("u1",), hide_replayed=False, include_shadow=True),
    Filters(users=("u0", "u2"), model_versions=("1",)),
    Filters(start=T0 + timedelta(hours=30)),
    Filters(start=T0 + timedelta(hours=15, minutes=7), end=T0 + timedelta(days=2, hours=1, minutes=3),
            hide_replayed=False, include_shadow=True),
    Filters(start=T0 + timedelta(hours=15), end=T0.replace(hour=0) + timedelta(days=3), users=("u3",)),
    Filters(start=T0 + timedelta(days=3, hours=12), model_versions=("2", "3"), include_shadow=True),  # spool rows
    Filters(end=T0 + timedelta(hours=20)),
]


def _relation(h, f) -> pd.DataFrame:
    """Every row and column a question over ``f`` sees, in one order."""
    from nutrilearn.monitoring.held_days import SNAPSHOT_COLUMNS

    return h.query("predictions", f, SNAPSHOT_COLUMNS, "SELECT * FROM {src} ORDER BY request_id, timestamp")


def test_rows_in_memory_filtered_as_the_files_are(store):
    """The app's History reads a window's days once, every row of them (shadow, replayed,
    all versions and users), and applies each question's filters in memory: a longer window
    held serves a shorter one, and a filter change reads nothing. Each filter's rows and
    figures must be exactly the files' (a History holding nothing), spooled rows included."""
    from nutrilearn.monitoring.history import History

    feedback = store.feedback(refresh=False)
    files = store.history
    kept = History(store.mirror, store.spool_dir, hold_rows=True)
    reads = []
    real_run = kept._run

    def run(*args, **kw):
        if kw.get("spool") is False:  # a read of days into memory
            reads.append(kw["files"])
        return real_run(*args, **kw)

    kept._run = run
    narrowed = []
    real_narrowed = kept._held_days._narrowed

    def narrow(table, block, wanted):
        out = real_narrowed(table, block, wanted)
        narrowed.append(out.num_rows < table.num_rows)
        return out

    kept._held_days._narrowed = narrow
    try:
        whole = _relation(kept, MEMORY_FILTERS[0])
        assert len(whole) == len(_relation(files, MEMORY_FILTERS[0])) > 250
        held = kept.held_rows()
        assert held > 0 and len(reads) <= 2  # all the days at once (the newest apart)
        for f in MEMORY_FILTERS:
            want = _relation(files, f)
            got = _relation(kept, f)
            assert len(want) > 0 or f.model_versions == ("3",), f
            _same(got, want)
            for a, b in zip(_all_figures(kept, f, feedback), _all_figures(files, f, feedback)):
                if isinstance(b, pd.DataFrame):
                    _same(a, b)
                elif hasattr(b, "latency"):
                    _same(a.latency, b.latency)
                    assert (a.status, a.requests, a.errors, a.problems) == (b.status, b.requests, b.errors, b.problems)
                elif hasattr(b, "__dict__"):
                    for name, value in vars(b).items():
                        assert vars(a)[name] == (pytest.approx(value, nan_ok=True) if isinstance(value, float)
                                                 else value), (f, name)
                else:
                    assert a == b, f
            _same(agg.shadow_pairs(kept, f), agg.shadow_pairs(files, f))
            assert _plain_summary(kept.summary(f)) == _plain_summary(files.summary(f)), f
            by_user = [h.counts_by("user", f).sort_values("user", kind="stable") for h in (kept, files)]
            _same(*by_user)  # ordered by count only: ties in either order
        assert len(reads) <= 2 and kept.held_rows() == held  # every filter and window from the first read
        assert any(narrowed) and not all(narrowed)  # short windows scan their days' rows only
    finally:
        kept.close()


def _plain_summary(summary: dict) -> dict:
    out = dict(summary)
    for k in ("mean_confidence", "error_rate"):
        out[k] = None if out[k] is None else round(out[k], 9)
    out["latency_ms"] = {k: None if v is None else round(v, 9) for k, v in out["latency_ms"].items()}
    out["top_foods"] = [{**r, "share": round(r["share"], 9)} for r in out["top_foods"]]
    return out


def test_a_shorter_window_first_then_a_longer_one_reads_only_the_days_missing(store, monkeypatch):
    from nutrilearn.monitoring.history import History

    files = store.history
    kept = History(store.mirror, store.spool_dir, hold_rows=True)
    read_days: list[set[str]] = []
    read = kept._read_whole_days
    monkeypatch.setattr(kept, "_read_whole_days", lambda fs: read_days.append({df.day for df in fs}) or read(fs))
    try:
        short = Filters(start=T0 + timedelta(days=2, hours=3))
        _same(_relation(kept, short), _relation(files, short))
        first, short_days = kept.held_rows(), set().union(*read_days)
        assert short_days
        read_days.clear()
        whole = Filters(hide_replayed=False, include_shadow=True)
        _same(_relation(kept, whole), _relation(files, whole))
        assert kept.held_rows() > first
        assert read_days and not short_days & set().union(*read_days)  # the held days are not read again
        days = {df.day for df in store.mirror.day_files("predictions")}
        assert sum(len(b.days) for b in kept._held_days.blocks) == len(days)  # each day held once
    finally:
        kept.close()


def test_held_rows_follow_new_files_spooled_rows_and_the_cap(tracking, loggers, tmp_path):
    """Rows still in the spool are answered beside the held rows, under the same filters; a
    day whose files change (a new batch, a compaction) is read again, alone; a window
    holding more rows than the cap is answered from the files and holds nothing."""
    from nutrilearn.monitoring.history import History
    from nutrilearn.tracking.mirror import Mirror
    from nutrilearn.tracking.records import rows_to_table

    def record(i, hours, **kw):
        rec = make_record(i, when=T0 + timedelta(hours=hours), **kw)
        if i % 7 == 3:
            rec.request_id += SHADOW_SUFFIX
        return rec

    mirror = Mirror(tracking, directory=tmp_path / "mirror")
    mirror.ingest("predictions", rows_to_table(
        [record(i, 5 * i, user=f"u{i % 3}", model_version="12" if i % 2 else "2",
                source="replay" if i % 5 == 0 else "app").to_row() for i in range(40)], "predictions"))
    logger = loggers(tracking, start=False)
    for i in range(12):  # never flushed: in the spool only
        logger.submit(record(200 + i, 5 * 38 + 3 * i, user=f"u{i % 2}", source="replay" if i % 4 == 0 else "app"))
    files = History(mirror, tracking.spool_dir)
    kept = History(mirror, tracking.spool_dir, hold_rows=True)
    assert kept.pending_count() == 12
    every = Filters(hide_replayed=False, include_shadow=True)
    choices = [every, Filters(), Filters(users=("u1",)), Filters(model_versions=("2",), include_shadow=True),
               Filters(start=T0 + timedelta(days=7, hours=21), hide_replayed=False),
               Filters(start=T0 + timedelta(days=7), users=("u0",), include_shadow=True)]
    try:
        for f in choices:
            _same(_relation(kept, f), _relation(files, f))
        assert kept.held_rows() == 40  # the files' rows; the spool's are added to each answer
        # New rows on the last day and on a new day: those days change, the rest stay held.
        mirror.ingest("predictions", rows_to_table(
            [record(100 + i, 5 * 39 + 2 * i, user="u9").to_row() for i in range(6)], "predictions"))
        for f in [*choices, Filters(users=("u9",))]:
            _same(_relation(kept, f), _relation(files, f))
        assert kept.held_rows() == 46
        assert len(_relation(kept, Filters(users=("u9",), include_shadow=True))) == 6
    finally:
        kept.close()
        files.close()
    capped = History(mirror, None, hold_rows=True, snapshot_max_rows=45)
    plain = History(mirror, None)
    try:
        _same(_relation(capped, every), _relation(plain, every))
        assert capped.held_rows() == 0
        short = Filters(start=T0 + timedelta(days=6))
        _same(_relation(capped, short), _relation(plain, short))
        assert 0 < capped.held_rows() <= 45
    finally:
        capped.close()
        plain.close()
        mirror.close()
