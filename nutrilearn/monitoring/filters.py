"""``Filters``: what a monitoring question selects (time window, versions, users, replayed,
shadow answers). In its own module, free of pandas, so ``nutrilearn monitor`` and other
engine-only paths import it without pandas' half-second start-up; ``stats`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Filters:
    """What the page's sidebar chose. Empty tuples mean "all"."""

    start: datetime | None = None  # inclusive; a naive datetime is taken as UTC
    end: datetime | None = None  # exclusive
    model_versions: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    hide_replayed: bool = True  # replayed traffic is demo/test data, never mistaken for live
    # Shadow records (a challenger's answer to a photo the champion answered) are not extra
    # requests: left out by default so volumes, users and health count what people got;
    # included to compare versions (confidence by version, accuracy by version).
    include_shadow: bool = False

    @classmethod
    def last(cls, period: timedelta | None, now: datetime | None = None, **kw) -> "Filters":
        """The window ``[now - period, now]`` (``None`` for all time)."""
        if period is None:
            return cls(**kw)
        now = now or datetime.now().astimezone()
        return cls(start=now - period, **kw)
