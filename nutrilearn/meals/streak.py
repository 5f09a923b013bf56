"""Streaks of consecutive logged days, counted on the user's local calendar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Streak:
    """``current`` counts back from today, or from yesterday while today is still open
    (a streak is not broken until a whole day passes without a meal)."""

    current: int
    longest: int
    last_logged: dt.date | None
    logged_today: bool


def streak(dates: Iterable[dt.date], today: dt.date) -> Streak:
    """Streak over local dates on which at least one meal was logged.

    Dates after ``today`` (a clock or time-zone mismatch) are ignored.
    """
    days = sorted({d for d in dates if d <= today})
    if not days:
        return Streak(0, 0, None, False)
    longest = run = 1
    for previous, day in zip(days, days[1:]):
        run = run + 1 if (day - previous).days == 1 else 1
        longest = max(longest, run)
    last = days[-1]
    current = 0
    if (today - last).days <= 1:
        current = 1
        logged = set(days)
        cursor = last - dt.timedelta(days=1)
        while cursor in logged:
            current += 1
            cursor -= dt.timedelta(days=1)
    return Streak(current=current, longest=longest, last_logged=last, logged_today=last == today)
