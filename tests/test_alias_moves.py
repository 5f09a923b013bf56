"""Champion moves as chart markers: which moves a trend chart shows, and where (no store)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from nutrilearn.monitoring.drift_views import over_time_moves
from nutrilearn.monitoring.versions import alias_moves, moves_within
from nutrilearn.registry.store import AliasEvent

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def event(days: float, alias: str, action: str, old: str | None, new: str | None, tz=timezone.utc) -> AliasEvent:
    return AliasEvent((T0 + timedelta(days=days)).astimezone(tz), alias, action, old, new, "pytest", "why", f"run{days}")


EVENTS = [
    event(-30, "champion", "create", None, "1"),
    event(2, "challenger", "set", None, "3"),                      # not a champion move
    event(3, "champion", "promote", "1", "2", timezone(timedelta(hours=-7))),  # recorded in another zone
    event(4, "champion", "clear", "2", None),                      # no champion after it: nothing to mark
    event(5, "champion", "rollback", "2", "1"),
]


def chunks(days: list[float], signals=("food", "confidence")) -> pd.DataFrame:
    starts = [pd.Timestamp(T0 + timedelta(days=d)) for d in days]
    return pd.DataFrame([{"signal": s, "start": t, "end": t + pd.Timedelta(days=1), "distance": 0.1}
                         for t in starts for s in signals])


def test_alias_moves_are_champion_moves_in_utc_labelled_with_the_versions():
    moves = alias_moves(EVENTS)
    assert list(moves["text"]) == ["create: v- → v1", "promote: v1 → v2", "rollback: v2 → v1"]
    assert str(moves["when"].dt.tz) == "UTC"
    assert moves["when"].iloc[1] == pd.Timestamp(T0 + timedelta(days=3))  # same instant, whatever zone recorded it


def test_moves_within_keeps_the_moves_a_chart_of_those_times_can_show():
    moves = alias_moves(EVENTS)
    times = pd.Series(pd.date_range(T0 + timedelta(days=1), T0 + timedelta(days=3), freq="D"))
    near = moves_within(moves, times)  # a day of margin either side: days 0 to 4
    assert list(near["text"]) == ["promote: v1 → v2"]
    assert list(moves_within(moves, times, margin=pd.Timedelta(days=2))["to"]) == ["2", "1"]
    naive = times.dt.tz_localize(None)  # naive times are UTC
    assert list(moves_within(moves, naive)["text"]) == ["promote: v1 → v2"]
    assert len(moves_within(moves, pd.Series([], dtype="datetime64[ns, UTC]"))) == 3  # no data: all of them
    assert moves_within(alias_moves([]), times).empty


def test_moves_close_together_share_one_label():
    """A bootstrap and a promotion a minute apart would print over each other: the first
    rule carries both texts, the second none; a move further off keeps its own."""
    events = [event(0, "champion", "create", None, "1"), event(1 / 1440, "champion", "promote", "1", "2"),
              event(3, "champion", "rollback", "2", "1")]
    times = pd.Series(pd.date_range(T0 - timedelta(days=1), T0 + timedelta(days=3), freq="D"))
    near = moves_within(alias_moves(events), times)
    assert list(near["label"]) == ["create: v- → v1; promote: v1 → v2", "", "rollback: v2 → v1"]
    assert list(near["text"]) == ["create: v- → v1", "promote: v1 → v2", "rollback: v2 → v1"]  # tooltips keep each
    wide = moves_within(alias_moves(events), times, apart=0.0)  # at least a minute apart: each its own
    assert list(wide["label"]) == list(wide["text"])


def test_over_time_moves_marks_every_signal_row_at_the_moves_in_the_chart_span():
    moves = alias_moves(EVENTS)
    marks = over_time_moves(moves, chunks([1, 2]))  # chunks cover days 1 to 3: margin takes in day 4 not 5
    assert list(marks.columns) == ["signal", "when", "text", "label"]
    assert sorted(marks["signal"]) == ["confidence", "food"]
    assert set(marks["text"]) == {"promote: v1 → v2"}
    assert (marks["when"] == pd.Timestamp(T0 + timedelta(days=3))).all()
    later = over_time_moves(moves, chunks([4, 5], signals=("image",)))
    assert list(later["text"]) == ["promote: v1 → v2", "rollback: v2 → v1"] and set(later["signal"]) == {"image"}


def test_over_time_moves_without_moves_or_chunks_is_empty():
    assert over_time_moves(alias_moves([]), chunks([1])).empty
    assert over_time_moves(alias_moves(EVENTS), chunks([])).empty
    assert over_time_moves(alias_moves(EVENTS), chunks([60])).empty  # months after every move
