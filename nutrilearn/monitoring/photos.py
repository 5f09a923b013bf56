"""The photos behind the numbers: thumbnails by request id, and the galleries that show them.

Thumbnails live in their own Parquet column (``thumbnail``), which no figure selects
(``history.FIGURE_COLUMNS`` leaves it out): only these functions and exports read it, and
only for the request ids asked for. A store written before thumbnails existed, or with
``NUTRILEARN_KEEP_THUMBNAILS=0``, simply has none: the ids are missing from the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from nutrilearn.monitoring.history import History
from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking.records import SHADOW_SUFFIX

if TYPE_CHECKING:
    from nutrilearn.tracking.reader import PredictionReader

CHUNK = 500  # request ids bound per query


def _history(source: "History | PredictionReader") -> History:
    """A ``History`` or anything holding one (``PredictionReader.history``)."""
    return source if isinstance(source, History) else source.history


def photo_id(request_id: str) -> str:
    """The request whose photo this is: a challenger's shadow shows its champion's photo."""
    return request_id[: -len(SHADOW_SUFFIX)] if request_id.endswith(SHADOW_SUFFIX) else request_id


def thumbnails(source: "History | PredictionReader", request_ids: Iterable[str], *,
               start: datetime | None = None, end: datetime | None = None) -> dict[str, bytes]:
    """``{request_id: thumbnail bytes}`` for the ids that have one (WebP or JPEG, <= 128 px).

    Reads the thumbnail column for these ids only (bound parameters); ``start``/``end``
    (a window the ids fall in, if known) limit the day files opened. A shadow id
    (``<id>.challenger``) gets its champion's photo.
    """
    asked = [str(r) for r in dict.fromkeys(request_ids) if r is not None]
    if not asked:
        return {}
    wanted = sorted({photo_id(r) for r in asked})
    history = _history(source)
    window = Filters(start=start, end=end, hide_replayed=False, include_shadow=False)
    found: dict[str, bytes] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i:i + CHUNK]
        marks = ", ".join("?" * len(chunk))
        df = history.query("predictions", window, ("request_id", "thumbnail"),
                           f"SELECT request_id, thumbnail FROM {{src}} "
                           f"WHERE thumbnail IS NOT NULL AND request_id IN ({marks})", chunk)
        found.update(zip(df["request_id"], (bytes(b) for b in df["thumbnail"])))
    return {r: found[photo_id(r)] for r in asked if photo_id(r) in found}
