"""The mirror and the DuckDB history: what monitoring reads at scale, checked against pandas.

Records go through the real logger into a sqlite MLflow store; expected figures are
computed here with plain pandas from the records themselves.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pandas as pd
import pytest

from nutrilearn.cli import main
from nutrilearn.monitoring.history import History
from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking import mirror as mirror_mod
from nutrilearn.tracking.mirror import Mirror
from nutrilearn.tracking.records import SHADOW_SUFFIX
from nutrilearn.tracking.spool import new_owner
from tracking_fixtures import T0, make_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest_plugins = ["tracking_fixtures"]


@pytest.fixture
def logged(tracking, loggers):
    """300 predictions over three UTC days (versions 1/2, a challenger's shadows, replayed
    ones), 260 flushed to MLflow in batches of 20, 40 still in the spool."""
    logger = loggers(tracking, batch_max_records=20, start=False)
    records = []
    for i in range(300):
        rec = make_record(i, model_version="2" if i >= 150 else "1", source="replay" if i % 10 == 9 else "app",
                          when=T0 + timedelta(minutes=20 * i))
        if i % 15 == 14:
            rec.request_id += SHADOW_SUFFIX  # a challenger's shadow answer
        records.append(rec)
    for rec in records[:260]:
        logger.submit(rec)
    assert logger.flush(timeout=120)
    for rec in records[260:]:
        logger.submit(rec)
    return logger, pd.DataFrame([r.to_row() for r in records])


def _served(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["request_id"].str.endswith(SHADOW_SUFFIX)]


def test_mirror_copies_each_batch_once_split_by_day_and_compacted(tracking, logged, monkeypatch):
    monkeypatch.setattr(mirror_mod, "COMPACT_AT", 4)
    m = Mirror(tracking)
    result = m.sync()
    assert result.new_rows == 260 and result.failed_runs == 0 and result.new_runs >= 13  # batches per group
    days = dict(m.days())
    assert sum(days.values()) == 260
    assert set(days) == set(logged[1].iloc[:260]["timestamp"].dt.strftime("%Y-%m-%d"))
    for day in days:  # a day's many batch files became one (and one of shadow answers)
        files = [f for f in m.day_files("predictions") if f.day == day]
        batches = [f for f in files if "/c-" not in f.path]
        assert len(batches) < 4 and len(files) - len(batches) <= 2
    again = Mirror(tracking)  # a new process: remembers what it copied, lists nothing again
    assert again.finder.state.listed_all and again.sync().new_runs == 0


def test_a_batch_written_twice_is_mirrored_once(tracking, loggers):
    logger = loggers(tracking, batch_max_records=5, start=False)
    for i in range(5):
        logger.submit(make_record(i))
    batch = logger.spool.claim(new_owner(), max_records=5, max_age_s=0, lease_s=60, force=True)
    position = logger.spool.write_position(batch.batch_id)
    logger.writer.write(batch, position)
    client, _ = logger.writer._ready()
    for run in logger.writer.find_runs(batch.batch_id):  # pretend the first copy was never seen finished
        client.set_terminated(run.info.run_id, "FAILED")
    logger.writer.write(batch, position)  # ... so it is written again: two runs, one batch id
    for run in logger.writer.find_runs(batch.batch_id):
        client.set_terminated(run.info.run_id, "FINISHED")
    m = Mirror(tracking)
    m.sync()
    assert m.stats()["prediction_rows"] == 5


def test_history_figures_match_pandas_on_the_same_records(tracking, logged):
    _, df = logged
    m = Mirror(tracking)
    m.sync()
    h = History(m, tracking.spool_dir)
    served = _served(df)
    live = served[served["source"] != "replay"]
    ov = h.overview(Filters())  # served, replayed hidden: the page's default
    ok = live[live["status"] == "ok"]
    assert ov.count == len(live) and ov.errors == int((live["status"] != "ok").sum())
    assert ov.mean_confidence == pytest.approx(ok["confidence"].mean())
    assert ov.latency_ms["p95"] == pytest.approx(live["total_ms"].quantile(0.95))
    assert ov.users == live["user"].nunique()
    assert ov.first == live["timestamp"].min() and ov.last == live["timestamp"].max()
    top = h.top_foods(Filters(hide_replayed=False), n=3)
    expect = _served(df)[lambda d: d["status"] == "ok"]["label"].value_counts()
    assert list(top["count"]) == list(expect.iloc[:3]) and top["label"].iloc[0] == expect.index[0]
    daily = h.daily(Filters(hide_replayed=False, include_shadow=True))
    assert daily["count"].sum() == 300  # flushed and spooled, shadows included on purpose
    v1 = h.overview(Filters(model_versions=("1",), hide_replayed=False))
    assert v1.count == len(served[served["model_version"] == "1"])
    window = Filters(start=T0 + timedelta(days=1), end=T0 + timedelta(days=2), hide_replayed=False)
    in_window = served[(served["timestamp"] >= T0 + timedelta(days=1)) & (served["timestamp"] < T0 + timedelta(days=2))]
    assert h.overview(window).count == len(in_window)
    rows = h.rows(Filters(users=("analyst1",), hide_replayed=False), columns=("request_id", "user", "timestamp"),
                  limit=5, newest_first=True)
    assert set(rows.columns) >= {"request_id", "user", "timestamp"} and "embedding" not in rows.columns
    assert (rows["user"] == "analyst1").all() and rows["timestamp"].is_monotonic_decreasing
    hostile = h.overview(Filters(users=("x' OR '1'='1",), hide_replayed=False))
    assert hostile.count == 0  # values are bound, never spliced
    h.close()


def test_days_are_utc_days_in_any_time_zone(tracking, logged, monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local days differ from UTC days
    time.tzset()
    try:
        m = Mirror(tracking)
        m.sync()
        h = History(m, tracking.spool_dir)
        daily = h.daily(Filters(hide_replayed=False, include_shadow=True))
        expected = logged[1]["timestamp"].dt.strftime("%Y-%m-%d").value_counts().sort_index()
        assert [str(d)[:10] for d in daily["day"]] == list(expected.index)
        assert list(daily["count"]) == list(expected)
        h.close()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_monitor_cli_json(tracking, logged, capsys):
    assert main(["monitor", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"count", "errors", "error_rate", "mean_confidence", "latency_ms", "top_foods", "daily",
            "first", "last"} <= set(out)
    assert set(out["latency_ms"]) == {"p50", "p95", "p99"}
    served = _served(logged[1])  # replayed traffic counts unless --exclude-replayed, as in export-predictions
    assert out["count"] == len(served)
    assert sum(d["count"] for d in out["daily"]) == len(served)
    live = served[served["source"] != "replay"]
    assert main(["monitor", "--json", "--since", "2026-11-28", "--until", "2026-11-29", "--model-version", "2",
                 "--exclude-replayed"]) == 0
    week = json.loads(capsys.readouterr().out)
    sel = live[(live["model_version"] == "2") & (live["timestamp"] >= pd.Timestamp("2026-11-28", tz="UTC"))
               & (live["timestamp"] < pd.Timestamp("2026-11-29", tz="UTC"))]
    assert week["count"] == len(sel)
    with pytest.raises(SystemExit, match="is not a time"):
        main(["monitor", "--since", "yesterday-ish"])


def test_a_flushed_record_never_drops_out_of_the_history(tracking, loggers):
    """Between a batch leaving the spool (written to MLflow) and the mirror copying it, a
    record was in neither source: the Monitoring page said "No predictions logged yet" right
    after an upload. Reading after a flush now syncs the mirror first."""
    logger = loggers(tracking, batch_max_records=5, start=False)
    m = Mirror(tracking)
    m.sync()
    h = History(m, tracking.spool_dir)
    everything = Filters(hide_replayed=False, include_shadow=True)
    for i in range(3):
        logger.submit(make_record(i, when=T0 + timedelta(minutes=i)))
    assert h.overview(everything).count == 3 and h.pending_count() == 3
    assert logger.flush(timeout=120) and logger.spool.pending_count() == 0
    assert m.stats()["prediction_rows"] == 0  # nobody synced the mirror since
    assert h.overview(everything).count == 3  # was 0: gone from the spool, not mirrored yet
    assert h.pending_count() == 0 and m.stats()["prediction_rows"] == 3
    h.close()


def test_a_record_flushed_before_the_first_look_is_counted(tracking, loggers):
    """The app's first sync can run before a batch is finished; the batch leaves the spool
    just after, and the History's first look comes later: it must sync again, not trust it."""
    logger = loggers(tracking, batch_max_records=5, start=False)
    for i in range(3):
        logger.submit(make_record(i, when=T0 + timedelta(minutes=i)))
    m = Mirror(tracking)
    m.sync()  # the batch is not written yet
    assert logger.flush(timeout=120) and m.stats()["prediction_rows"] == 0
    h = History(m, tracking.spool_dir)
    assert h.overview(Filters(hide_replayed=False, include_shadow=True)).count == 3  # was 0
    h.close()
