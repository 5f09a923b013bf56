"""The photos behind the numbers: thumbnails by request id, and the galleries that show them.

Thumbnails live in their own Parquet column (``thumbnail``), which no figure selects
(``history.FIGURE_COLUMNS`` leaves it out): only ``thumbnails`` and exports read it, and
only for the request ids asked for. A store written before thumbnails existed, or with
``NUTRILEARN_KEEP_THUMBNAILS=0``, simply has none: the ids are missing from the answer.

The galleries (``least_confident``, ``by_food``, ``mistakes``, ``disagreements``) choose
which photos to show: DuckDB queries over the window's rows that never read the thumbnail
column and return small frames of request ids and what to caption them with; the page
then asks ``thumbnails`` for those ids only. ``record`` is the click-through: one
request's fields, its challenger's answer and its feedback. Values chosen by a person
(food, request id) are bound parameters.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from nutrilearn.monitoring.history import FIGURE_COLUMNS, History
from nutrilearn.monitoring.filters import Filters
from nutrilearn.tracking.records import SHADOW_SUFFIX

if TYPE_CHECKING:
    from nutrilearn.tracking.reader import PredictionReader

CHUNK = 500  # request ids bound per query
# What a gallery tile is captioned with; never the thumbnail (asked for separately, by id).
TILE_COLUMNS = ("request_id", "timestamp", "user", "model_version", "label", "confidence", "filename")
GALLERIES = ("least confident", "by food", "mistakes", "disagreements")


def _history(source: "History | PredictionReader") -> History:
    """A ``History`` or anything holding one (``PredictionReader.history``)."""
    return source if isinstance(source, History) else source.history


def photo_id(request_id: str) -> str:
    """The request whose photo this is: a challenger's shadow shows its champion's photo."""
    return request_id[: -len(SHADOW_SUFFIX)] if request_id.endswith(SHADOW_SUFFIX) else request_id


def thumbnails(source: "History | PredictionReader", request_ids: Iterable[str], *,
               start: datetime | None = None, end: datetime | None = None,
               times: Iterable | None = None) -> dict[str, bytes]:
    """``{request_id: thumbnail bytes}`` for the ids that have one (WebP or JPEG, <= 128 px).

    Reads the thumbnail column for these ids only (bound parameters); ``start``/``end``
    (a window the ids fall in, if known) limit the day files opened. ``times`` (each id's
    record time, in the order of ``request_ids``) does better for ids from distant windows
    (a reference in spring, a current week in autumn): one lookup per run of nearby times
    (``time_groups``), each opening only its own days. A shadow id (``<id>.challenger``)
    gets its champion's photo.
    """
    ids = [None if r is None else str(r) for r in request_ids]
    stamps = list(times) if times is not None else [None] * len(ids)
    if len(stamps) != len(ids):
        raise ValueError(f"times has {len(stamps)} entries for {len(ids)} request ids")
    asked = [r for r in dict.fromkeys(ids) if r is not None]
    if not asked:
        return {}
    history = _history(source)
    found: dict[str, bytes] = {}
    for group, group_start, group_end in time_groups(ids, stamps, start, end):
        wanted = sorted({photo_id(r) for r in group})
        window = Filters(start=group_start, end=group_end, hide_replayed=False, include_shadow=False)
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i:i + CHUNK]
            marks = ", ".join("?" * len(chunk))
            df = history.query("predictions", window, ("request_id", "thumbnail"),
                               f"SELECT request_id, thumbnail FROM {{src}} "
                               f"WHERE thumbnail IS NOT NULL AND request_id IN ({marks})", chunk)
            found.update(zip(df["request_id"], (bytes(b) for b in df["thumbnail"])))
    return {r: found[photo_id(r)] for r in asked if photo_id(r) in found}


def times_of(request_ids: Iterable[str], *frames: pd.DataFrame) -> list:
    """Each id's record time, read off ``frames`` that hold ``request_id`` and
    ``timestamp`` (None for an id in none of them): the ``times`` of ``thumbnails``."""
    known = pd.concat([f[["request_id", "timestamp"]] for f in frames if len(f)] or [pd.DataFrame(
        columns=["request_id", "timestamp"])]).drop_duplicates("request_id").set_index("request_id")["timestamp"]
    return [known.get(r) for r in request_ids]


GROUP_GAP = pd.Timedelta(days=1)  # times further apart than this are looked up apart


def time_groups(ids: list, times: list, start: datetime | None = None, end: datetime | None = None,
                gap: pd.Timedelta = GROUP_GAP) -> list[tuple[list[str], datetime | None, datetime | None]]:
    """``ids`` split into runs whose sorted times are at most ``gap`` apart, each with the
    span just covering it (``time_span``); ids without a time form one group over
    ``start``..``end``."""
    stamps = pd.to_datetime(pd.Series(times, dtype="object"), utc=True)
    known = pd.DataFrame({"id": ids, "at": stamps}).dropna()
    unknown = [r for r, t in zip(ids, stamps) if r is not None and pd.isna(t)]
    groups = [(unknown, start, end)] if unknown else []
    if len(known):
        known = known.sort_values("at", kind="stable")
        run = known["at"].diff().gt(gap).cumsum()
        for _, part in known.groupby(run, sort=True):
            groups.append((part["id"].tolist(), *time_span(part["at"])))
    return groups


def data_url(thumbnail: bytes | None) -> str | None:
    """A thumbnail as a ``data:`` URL (for image columns of tables); None stays None."""
    if not thumbnail:
        return None
    kind = "webp" if thumbnail[:4] == b"RIFF" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(thumbnail).decode('ascii')}"


def time_span(times: Iterable) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` just covering these record times (None, None if there are none):
    a lookup for shown rows then opens only the days they fall on, whatever the window."""
    stamps = pd.to_datetime(pd.Series(list(times), dtype="object"), utc=True).dropna()
    if stamps.empty:
        return None, None
    return stamps.min().to_pydatetime(), (stamps.max() + pd.Timedelta(microseconds=1)).to_pydatetime()


def with_thumbnails(rows: pd.DataFrame, source: "History | PredictionReader", column: str = "photo",
                    time_column: str | None = None, lookup=None) -> pd.DataFrame:
    """``rows`` (with ``request_id``) with a first ``column`` of thumbnail data URLs (None
    where none was kept): for an image column of a table. ``time_column`` (the rows' record
    times) narrows the lookup to the days they fall on. ``lookup(ids, start, end)``, if
    given, answers as ``thumbnails`` does (a cached one: the page asks for the same rows'
    photos again when a widget changes no row)."""
    ids = rows["request_id"].astype(str)
    start, end = time_span(rows[time_column]) if time_column and len(rows) else (None, None)
    found = (lookup or (lambda i, s, e: thumbnails(source, i, start=s, end=e)))(tuple(ids), start, end)
    out = rows.copy()
    out.insert(0, column, [data_url(found.get(r)) for r in ids])
    return out


# -- galleries: which photos to show ------------------------------------------------------


def _served(filters: Filters | None) -> Filters:
    """The window's served answers (the photos people were given an answer for)."""
    return replace(filters or Filters(), include_shadow=False)


def _tile_sql(prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{c}"' for c in TILE_COLUMNS)


def least_confident(source: "History | PredictionReader", filters: Filters | None = None, n: int = 24,
                    food: str | None = None) -> pd.DataFrame:
    """The window's ``n`` least confident answers (of one ``food`` if given), least first."""
    sql = f"""SELECT {_tile_sql()} FROM {{src}} WHERE status = 'ok' AND confidence IS NOT NULL
              AND (CAST(? AS VARCHAR) IS NULL OR label = ?)
              ORDER BY confidence, timestamp DESC, request_id LIMIT ?"""
    return _history(source).query("predictions", _served(filters), TILE_COLUMNS + ("status",), sql,
                                  [food, food, int(n)])


def by_food(source: "History | PredictionReader", filters: Filters | None = None, per_food: int = 6,
            foods: int = 12) -> pd.DataFrame:
    """For the ``foods`` most answered foods, their ``per_food`` least confident answers.

    Columns: the tile columns plus ``food_count`` (answers of that food in the window) and
    ``rank`` (1 = least confident); most answered food first. One pass: a GROUP BY with a
    top-n ``min_by`` per food (a window over every row took 9x longer at 10M rows).
    """
    tile = ", ".join(f"'{c}': \"{c}\"" for c in TILE_COLUMNS)
    sql = f"""SELECT food_count, rank, tile.* FROM (
                SELECT label, count(*) AS food_count, min_by({{{tile}}}, confidence, {max(1, int(per_food))}) AS tiles
                FROM {{src}} WHERE status = 'ok' AND label IS NOT NULL AND confidence IS NOT NULL
                GROUP BY label ORDER BY food_count DESC, label LIMIT ?
              ), unnest(tiles) WITH ORDINALITY AS u(tile, rank)
              ORDER BY food_count DESC, label, rank"""
    frame = _history(source).query("predictions", _served(filters), TILE_COLUMNS + ("status",), sql, [int(foods)])
    return frame[[*TILE_COLUMNS, "food_count", "rank"]]


def _latest_feedback(history: History, filters: Filters | None) -> pd.DataFrame:
    """The latest word per request id given since the window opened (by anyone)."""
    f = filters or Filters()
    window = Filters(start=f.start)  # feedback comes after its prediction, from any user
    return history.query("feedback", window, ("request_id", "label", "timestamp", "user"), """
        SELECT request_id, label AS true_label, "user" AS feedback_user, timestamp AS feedback_time
        FROM {src} QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp DESC) = 1""")


def mistakes(source: "History | PredictionReader", filters: Filters | None = None, n: int = 24,
             food: str | None = None) -> pd.DataFrame:
    """Answers that feedback corrected: tile columns, ``label`` (said) and ``true_label``
    (what the photo shows), most confident mistakes first. ``food`` matches either."""
    history = _history(source)
    fb = _latest_feedback(history, filters)
    if fb.empty:
        return pd.DataFrame(columns=[*TILE_COLUMNS, "true_label", "feedback_user", "feedback_time"])
    sql = f"""SELECT {_tile_sql("p.")}, fb.true_label, fb.feedback_user, fb.feedback_time
              FROM {{src}} AS p
              JOIN (SELECT unnest(?::VARCHAR[]) AS request_id, unnest(?::VARCHAR[]) AS true_label,
                           unnest(?::VARCHAR[]) AS feedback_user, unnest(?::TIMESTAMPTZ[]) AS feedback_time) AS fb
                ON p.request_id = fb.request_id
              WHERE p.status = 'ok' AND p.label IS DISTINCT FROM fb.true_label
                AND (CAST(? AS VARCHAR) IS NULL OR p.label = ? OR fb.true_label = ?)
              ORDER BY p.confidence DESC, p.timestamp DESC, p.request_id LIMIT ?"""
    params = [fb["request_id"].astype(str).tolist(), fb["true_label"].astype(str).tolist(),
              fb["feedback_user"].astype(str).tolist(), list(fb["feedback_time"].dt.to_pydatetime()),
              food, food, food, int(n)]
    return history.query("predictions", _served(filters), TILE_COLUMNS + ("status",), sql, params)


def disagreements(source: "History | PredictionReader", filters: Filters | None = None, n: int = 24,
                  food: str | None = None) -> pd.DataFrame:
    """Photos where the challenger's shadow answer differs from the champion's: tile
    columns (the champion's answer) plus ``challenger_version``, ``challenger_label``,
    ``challenger_confidence``; newest first. ``food`` matches either answer."""
    both = replace(filters or Filters(), include_shadow=True, model_versions=())
    # NOT MATERIALIZED: each side is its own scan with its filter pushed down (a materialised
    # CTE copied every row of the window first: 16x slower at 10M rows).
    sql = f"""WITH r AS NOT MATERIALIZED (
                SELECT {_tile_sql()} FROM {{src}} WHERE status = 'ok' AND label IS NOT NULL)
              SELECT {_tile_sql("s.")}, c.model_version AS challenger_version, c.label AS challenger_label,
                     c.confidence AS challenger_confidence
              FROM r AS s
              JOIN (SELECT left(request_id, length(request_id) - ?) AS served_id, model_version, label, confidence
                    FROM r WHERE ends_with(request_id, ?)) AS c ON s.request_id = c.served_id
              WHERE NOT ends_with(s.request_id, ?) AND s.label IS DISTINCT FROM c.label
                AND (CAST(? AS VARCHAR) IS NULL OR s.label = ? OR c.label = ?)
              ORDER BY s.timestamp DESC, s.request_id LIMIT ?"""
    return _history(source).query("predictions", both, TILE_COLUMNS + ("status",), sql,
                                  [len(SHADOW_SUFFIX), SHADOW_SUFFIX, SHADOW_SUFFIX, food, food, food, int(n)])


def foods(source: "History | PredictionReader", filters: Filters | None = None) -> list[str]:
    """Labels answered in the window, most answered first (for a food picker)."""
    return _history(source).top_foods(_served(filters), n=1000)["label"].astype(str).tolist()


def gallery(source: "History | PredictionReader", which: str, filters: Filters | None = None, n: int = 24,
            food: str | None = None) -> pd.DataFrame:
    """One of ``GALLERIES`` by name, with a ``caption`` column for its tiles."""
    if which == "least confident":
        frame = least_confident(source, filters, n, food)
    elif which == "by food":
        frame = by_food(source, filters, per_food=max(1, n // 4), foods=4 if food is None else 1000)
        frame = frame[frame["label"] == food] if food is not None else frame
    elif which == "mistakes":
        frame = mistakes(source, filters, n, food)
    elif which == "disagreements":
        frame = disagreements(source, filters, n, food)
    else:
        raise ValueError(f"no gallery {which!r}; choose one of {', '.join(GALLERIES)}")
    return frame.assign(caption=captions(frame, which)).reset_index(drop=True)


def captions(frame: pd.DataFrame, which: str) -> list[str]:
    """What each tile says: the answer and its confidence, and what it is compared with."""
    from nutrilearn.answers import percent
    from nutrilearn.vision.vocabulary import display_name

    out = []
    for row in frame.itertuples(index=False):
        said = f"{display_name(row.label)} {percent(row.confidence)}"
        if which == "mistakes":
            out.append(f"said {said} · true {display_name(row.true_label)}")
        elif which == "disagreements":
            out.append(f"v{row.model_version}: {said} · v{row.challenger_version}: "
                       f"{display_name(row.challenger_label)} {percent(row.challenger_confidence)}")
        else:
            out.append(said)
    return out


# -- click-through ------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRecord:
    """One request as the gallery's click-through shows it."""

    request_id: str
    fields: dict[str, Any]  # the served record's figure columns
    challenger: dict[str, Any] | None  # the challenger's shadow answer to the same photo
    feedback: dict[str, Any] | None  # the latest feedback (true label, who, when)
    thumbnail: bytes | None


def record(source: "History | PredictionReader", request_id: str, start: datetime | None = None,
           end: datetime | None = None) -> PhotoRecord | None:
    """The record behind a thumbnail (None if the id is unknown in ``[start, end)``)."""
    history = _history(source)
    rid = photo_id(str(request_id))
    window = Filters(start=start, end=end, hide_replayed=False, include_shadow=True)
    rows = history.query("predictions", window, FIGURE_COLUMNS,
                         "SELECT * FROM {src} WHERE request_id IN (?, ?) ORDER BY request_id",
                         [rid, rid + SHADOW_SUFFIX]).drop(columns=["day"], errors="ignore")
    served = rows[rows["request_id"] == rid]
    if served.empty:
        return None
    shadow = rows[rows["request_id"] == rid + SHADOW_SUFFIX]
    fb = history.query("feedback", Filters(start=start), ("request_id", "label", "timestamp", "user", "kind"),
                       """SELECT label AS true_label, kind, "user", timestamp FROM {src} WHERE request_id = ?
                          ORDER BY timestamp DESC LIMIT 1""", [rid])
    return PhotoRecord(
        request_id=rid,
        fields=_plain_row(served.iloc[0]),
        challenger=_plain_row(shadow.iloc[0]) if len(shadow) else None,
        feedback=_plain_row(fb.iloc[0]) if len(fb) else None,
        thumbnail=thumbnails(history, [rid], start=start, end=end).get(rid),
    )


def _plain_row(row: pd.Series) -> dict[str, Any]:
    """A frame row as plain Python values (lists, not arrays; None, not NaN)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        elif value is not None and not isinstance(value, (list, str, bytes)) and pd.isna(value):
            value = None
        out[str(key)] = value
    return out


RECORD_FIELDS = ("request_id", "timestamp", "user", "source", "filename", "model_version", "model_alias",
                 "status", "label", "confidence", "is_food", "top5_labels", "top5_probs", "error_type",
                 "error_message", "total_ms", "decode_ms", "preprocess_ms", "inference_ms", "image_width",
                 "image_height", "image_format", "image_bytes", "brightness", "contrast", "saturation",
                 "sharpness", "aspect")


def record_table(rec: PhotoRecord) -> pd.DataFrame:
    """``field, value`` rows of a record (as text), its challenger's answer and feedback after."""
    from nutrilearn.answers import percent

    def text(name: str, value: Any) -> str:
        if value is None:
            return "–"
        if name in ("confidence",):
            return percent(value)
        if name == "top5_probs":
            return ", ".join(percent(v) for v in value)
        if name == "top5_labels":
            return ", ".join(value)
        if name == "timestamp" and hasattr(value, "strftime"):
            return value.strftime("%Y-%m-%d %H:%M:%S UTC")
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    rows = [(name, text(name, rec.fields.get(name))) for name in RECORD_FIELDS if name in rec.fields]
    if rec.challenger is not None:
        rows += [("challenger version", text("model_version", rec.challenger.get("model_version"))),
                 ("challenger answer", text("label", rec.challenger.get("label"))),
                 ("challenger confidence", text("confidence", rec.challenger.get("confidence")))]
    if rec.feedback is not None:
        rows += [("feedback", f"{rec.feedback.get('kind')}: {rec.feedback.get('true_label')}"),
                 ("feedback by", text("user", rec.feedback.get("user"))),
                 ("feedback at", text("timestamp", rec.feedback.get("timestamp")))]
    return pd.DataFrame(rows, columns=["field", "value"])
