"""What makes the history fast at scale, checked for correctness: pruning by the manifest's
shadow counts and day folders, and run discovery that asks only writers with something new.

Expected figures are computed with pandas from the records themselves.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pandas as pd
import pytest

from nutrilearn.monitoring.history import History
from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking import mirror as mirror_mod
from nutrilearn.tracking import store
from nutrilearn.tracking.mirror import Mirror
from nutrilearn.tracking.records import SHADOW_SUFFIX
from tracking_fixtures import T0, make_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest_plugins = ["tracking_fixtures"]

MIDNIGHT = T0.replace(hour=0)


@pytest.fixture
def flushed(tracking, loggers):
    """120 predictions over three UTC days, every 6th a challenger's shadow, all flushed."""
    logger = loggers(tracking, batch_max_records=10, start=False)
    records = []
    for i in range(120):
        rec = make_record(i, when=T0 + timedelta(minutes=36 * i), source="replay" if i % 7 == 6 else "app")
        if i % 6 == 5:
            rec.request_id += SHADOW_SUFFIX
        records.append(rec)
        logger.submit(rec)
    assert logger.flush(timeout=120)
    return pd.DataFrame([r.to_row() for r in records])


def _served(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["request_id"].str.endswith(SHADOW_SUFFIX)]


def _same(a, b) -> bool:
    """Overviews equal (floats up to summation order, which differs with the files' grouping)."""
    return (a.count, a.errors, a.users, a.first, a.last) == (b.count, b.errors, b.users, b.first, b.last) \
        and a.mean_confidence == pytest.approx(b.mean_confidence) and a.latency_ms == pytest.approx(b.latency_ms)


def test_compaction_keeps_shadows_apart_and_counts_them(tracking, flushed, monkeypatch):
    monkeypatch.setattr(mirror_mod, "COMPACT_AT", 3)
    m = Mirror(tracking)
    m.sync()
    files = m.day_files("predictions")
    assert sum(f.rows for f in files) == 120
    assert sum(f.shadow_rows for f in files) == 20
    compacted = [f for f in files if "/c-" in f.path]
    assert compacted and all(f.shadow_rows in (0, f.rows) for f in compacted)  # all served or all shadow
    assert any(f.shadow_rows == f.rows for f in compacted)


def test_figures_are_the_same_whatever_the_manifest_knows_about_shadows(tracking, flushed):
    m = Mirror(tracking)
    m.sync()
    h = History(m)
    served = _served(flushed)
    f = Filters(hide_replayed=False)
    counted = h.overview(f)
    assert counted.count == len(served)
    assert h.overview(Filters(hide_replayed=False, include_shadow=True)).count == 120
    with sqlite3.connect(m.directory / "manifest.db") as db:  # a manifest from before the counts
        db.execute("UPDATE files SET shadow_rows = NULL")
    assert _same(h.overview(f), counted)  # unknown: filtered by request id instead
    assert list(h.daily(f)["count"]) == list(served["timestamp"].dt.strftime("%Y-%m-%d").value_counts().sort_index())
    m.sync()  # counts them again
    assert all(df.shadow_rows is not None for df in m.day_files("predictions"))
    assert _same(h.overview(f), counted)
    h.close()


@pytest.mark.parametrize("start,end", [
    (MIDNIGHT + timedelta(days=1), MIDNIGHT + timedelta(days=2)),  # whole days: no time check needed
    (T0 + timedelta(hours=5), T0 + timedelta(days=1, hours=7)),  # edges inside days
    (MIDNIGHT + timedelta(days=1), None),
    (None, T0 + timedelta(days=1, hours=3)),
])
def test_windows_count_exactly_their_rows(tracking, flushed, start, end):
    m = Mirror(tracking)
    m.sync()
    h = History(m)
    served = _served(flushed)
    sel = served
    if start is not None:
        sel = sel[sel["timestamp"] >= start]
    if end is not None:
        sel = sel[sel["timestamp"] < end]
    f = Filters(start=start, end=end, hide_replayed=False)
    ov = h.overview(f)
    assert ov.count == len(sel) and ov.first == sel["timestamp"].min() and ov.last == sel["timestamp"].max()
    assert ov.users == sel["user"].nunique()
    assert ov.latency_ms["p50"] == pytest.approx(sel["total_ms"].quantile(0.5))
    daily = h.daily(f)
    assert daily["count"].sum() == len(sel)
    live = sel[sel["source"] != "replay"]
    assert h.overview(Filters(start=start, end=end)).count == len(live)
    h.close()


def test_only_writers_with_new_runs_are_asked(tracking, loggers, tmp_path, monkeypatch):
    a = loggers(tracking, spool_dir=tmp_path / "a", batch_max_records=5, start=False)
    b = loggers(tracking, spool_dir=tmp_path / "b", batch_max_records=5, start=False)
    for logger, base in ((a, 0), (b, 100)):
        for i in range(5):
            logger.submit(make_record(base + i))
        assert logger.flush(timeout=60)
    m = Mirror(tracking)
    assert m.sync().new_rows == 10  # the first full listing
    asked: list[str] = []
    real = m.finder._search
    monkeypatch.setattr(m.finder, "_search", lambda flt: asked.append(flt) or real(flt))
    monkeypatch.setattr(m, "_store_fingerprint", lambda: None)  # as through a server: no shortcut
    assert m.sync().new_rows == 0
    assert len(asked) == 2  # marks not seen yet: both asked once
    asked.clear()
    assert m.sync().new_rows == 0 and asked == []  # nothing new anywhere: nobody asked
    for i in range(5):
        b.submit(make_record(200 + i))
    assert b.flush(timeout=60)
    assert m.sync().new_rows == 5
    assert len(asked) == 1 and b.spool.writer_id in asked[0]
    # A writer listed with a bare host name (an older writer) is always asked.
    client = m.finder.client
    client.set_experiment_tag(m.finder.experiment_id(), store.writer_tag(a.spool.writer_id), "old-host")
    asked.clear()
    assert m.sync().new_rows == 0 and len(asked) == 1 and a.spool.writer_id in asked[0]
    again = Mirror(tracking)  # a new process remembers the marks
    monkeypatch.setattr(again, "_store_fingerprint", lambda: None)
    monkeypatch.setattr(again.finder, "_search", lambda flt: asked.append(flt) or real(flt))
    asked.clear()
    assert again.sync().new_rows == 0 and len(asked) == 1  # only the one without a run mark


def test_compaction_rewrites_new_batches_not_the_day(tracking, monkeypatch):
    """Tiered: batch files merge among themselves; merged files merge only once there are
    COMPACT_AT of them, so picking up a batch never rewrites the whole day."""
    import pyarrow as pa

    monkeypatch.setattr(mirror_mod, "COMPACT_AT", 3)
    m = Mirror(tracking)
    n = 0

    def add(k: int) -> None:
        nonlocal n
        for _ in range(k):
            rows = [make_record(n + i, when=T0 + timedelta(minutes=n + i)).to_row() for i in range(5)]
            n += 5
            m.ingest("predictions", pa.Table.from_pylist(rows))
        m._compact("predictions", T0.strftime("%Y-%m-%d"))

    def merged() -> list[str]:
        return sorted(f.path for f in m.day_files("predictions") if "/c-" in f.path)

    add(3)
    first = merged()
    assert len(first) == 1 and len(m.day_files("predictions")) == 1
    add(2)  # below the mark: the merged file stays as it is
    assert merged() == first and len(m.day_files("predictions")) == 3
    add(1)  # three batch files: merged among themselves, the first merged file untouched
    assert len(merged()) == 2 and first[0] in merged()
    add(3)
    assert len(merged()) == 1 and merged() != first  # three merged files became one
    assert sum(f.rows for f in m.day_files("predictions")) == n
    h = History(m)
    assert h.overview(Filters(hide_replayed=False)).count == n
    h.close()
