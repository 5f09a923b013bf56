"""``HeldDays``: whole UTC days of prediction rows kept in memory for ``History`` (``hold_rows``).

The app asks ~25 questions of a window each rerun, and changes filters and windows often:
each file scan costs ~0.2 s at 1M rows, the same question over rows in memory a few
hundredths. So the days a question covers are read once, every row of them (shadow answers,
replayed, all versions and users; ``SNAPSHOT_COLUMNS`` only), and each question applies its
filters to them: a filter change reads nothing, nor does a shorter window once a longer one
was read, and a longer one reads only the days not held yet. At most ``max_rows`` rows are
kept (least recently used days go first); a window holding more is read from the files each
time. New batches and compaction change a day's files: that day alone is read again. A short
window over a long block's days gets a copy of its days' rows (under half the block; the
last 2 kept), so each question scans those only.

This module only decides which days to read, keep and drop; ``History`` lists and reads the
files and filters the held rows with the same SQL conditions as its file scans, so memory
answers as the files do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from nutrilearn.tracking.mirror import DayFile

log = logging.getLogger(__name__)

# What the Monitoring page's figures and its recent rows read (not messages, top-5 lists or
# image statistics): the app's History keeps these columns of the days it was asked about,
# and a question asking only for them is answered from memory.
SNAPSHOT_COLUMNS = ("request_id", "timestamp", "user", "model_version", "model_alias", "status", "source",
                    "error_type", "filename", "label", "confidence", "decode_ms", "preprocess_ms", "inference_ms",
                    "total_ms", "day")
# Rows kept in memory in all (about 140 bytes a row: ~210 MB); a time range holding more is
# read from the files each time.
SNAPSHOT_MAX_ROWS = 1_500_000
# Few-valued text columns are held dictionary-encoded (DuckDB reads them as the same text,
# a few times faster to group and compare).
_DICTIONARY_COLUMNS = ("user", "model_version", "model_alias", "status", "source", "error_type", "label")


@dataclass(eq=False)
class HeldBlock:
    """Every row (shadow answers, replayed, all versions and users) of some days' files, as
    read in one go: ``SNAPSHOT_COLUMNS`` of them (and the reader's flags) as an Arrow table."""

    table: Any
    days: dict[str, tuple[str, ...]]  # day -> the paths of the files its rows came from
    rows: int


def _dictionary_encoded(table):
    import pyarrow.compute as pc

    for name in _DICTIONARY_COLUMNS:
        i = table.schema.get_field_index(name)
        if i >= 0 and not str(table.schema.field(i).type).startswith("dictionary"):
            table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
    return table


def _date_array(days: Sequence[str]):
    """``YYYY-MM-DD`` days as an Arrow date array (to match held rows' ``day`` column)."""
    import pyarrow as pa

    return pa.array([datetime.fromisoformat(d).date() for d in days], type=pa.date32())


def _group_days(files: Sequence[DayFile]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for df in files:
        out.setdefault(df.day, []).append(df.path)
    return {day: tuple(paths) for day, paths in out.items()}


class HeldDays:
    """Blocks of whole days' rows, least recently used first, at most ``max_rows`` rows in
    all; thread-safe (one per ``History``)."""

    def __init__(self, max_rows: int = SNAPSHOT_MAX_ROWS):
        self.max_rows = max_rows
        self.blocks: list[HeldBlock] = []  # least recently used first; blocks never share a day
        self._lock = threading.Lock()
        self._narrow: dict[tuple, tuple[Any, Any]] = {}  # (table id, days) -> (table, its rows of those days)

    def rows(self) -> int:
        """Rows held now."""
        with self._lock:
            return sum(b.rows for b in self.blocks)

    def table(self, files: Sequence[DayFile], every: Sequence[DayFile],
              read: Callable[[list[DayFile]], Any], keep: bool = True):
        """Every row of the days of ``files`` as one Arrow table from memory, possibly with
        other days' rows too (the question's filters select its rows); the days not held yet
        are read first with ``read`` (every row of the files given), unless ``keep`` is false.
        ``every``: all the mirror's files now; held days whose files are no longer those (a
        new batch, a compaction) are dropped first, and the newest day is read apart (new
        batches land there: a change drops it alone). None when the days hold more rows than
        the cap, are not held and not ``keep``, or a read fails: the question then reads the
        files."""
        wanted = _group_days(files)
        if not wanted or sum(df.rows for df in files) > self.max_rows:
            return None
        with self._lock:
            self._drop_changed(_group_days(every))
            have = {day: block for block in self.blocks for day in block.days}
            missing = [day for day in wanted if day not in have]
            if missing and not keep:
                return None
            using = list({id(have[d]): have[d] for d in wanted if d in have}.values())
            absent = set(missing)
            if sum(b.rows for b in using) + sum(df.rows for df in files if df.day in absent) \
                    > self.max_rows:  # held days around the window would outgrow the cap
                self.blocks, using, missing = [], [], list(wanted)
            # As now (a later trim replaces a block's table, never edits it), each narrowed to
            # the window's days when it holds many more.
            tables = [self._narrowed(b.table, b, wanted) for b in using]
        new = []
        if missing:
            # The mirror's newest day apart: new batches land there, and a changed day is
            # dropped with its block (the older days' block stays).
            newest = every[-1].day if every else None
            for part in ((missing[:-1], missing[-1:]) if missing[-1] == newest else (missing,)):
                if not part:
                    continue
                part_days = set(part)
                try:
                    table = read([df for df in files if df.day in part_days])
                except Exception as exc:  # a file compacted away meanwhile: read the files this time
                    log.debug("not holding %d day(s) in memory: %s", len(part), exc)
                    return None
                table = _dictionary_encoded(table)
                new.append(HeldBlock(table, {d: wanted[d] for d in part}, table.num_rows))
        with self._lock:
            self._keep(using, new)
        tables += [b.table for b in new]
        if len(tables) == 1:
            return tables[0]
        import pyarrow as pa

        try:
            return pa.concat_tables(tables)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # blocks typed apart (cannot happen today)
            log.debug("held blocks differ in schema: %s", exc)
            return None

    def _keep(self, using: list[HeldBlock], new: list[HeldBlock]) -> None:
        """``using`` made the most recently used, ``new`` added, and the least recently used
        other blocks dropped down to the cap (under ``_lock``)."""
        for block in using:  # most recently used last
            if block in self.blocks:
                self.blocks.remove(block)
                self.blocks.append(block)
        if new:  # blocks never share a day (another thread may have read some of these meanwhile)
            fresh = {day for block in new for day in block.days}
            self.blocks = [b for b in self.blocks if not fresh.intersection(b.days)] + new
        keep_ids = {id(b) for b in using + new}
        while sum(b.rows for b in self.blocks) > self.max_rows:
            victim = next((b for b in self.blocks if id(b) not in keep_ids), None)
            if victim is None:
                break
            self.blocks.remove(victim)
        live = {id(b.table) for b in self.blocks}  # narrowed rows of blocks gone or trimmed go too
        self._narrow = {k: v for k, v in self._narrow.items() if k[0] in live}

    def _narrowed(self, table, block: HeldBlock, wanted: dict[str, tuple[str, ...]]):
        """``table`` (``block``'s), or its rows of the ``wanted`` days when those are under
        half of it: a short window over a long block's days then scans its own rows only,
        question after question (kept for the last few windows; under ``_lock``)."""
        import pyarrow.compute as pc

        days = sorted(d for d in block.days if d in wanted)
        if len(days) == len(block.days):
            return table
        key = (id(table), tuple(days))
        hit = self._narrow.pop(key, None)
        if hit is None or hit[0] is not table:
            mask = pc.is_in(table.column("day"), value_set=_date_array(days))
            # Half or more of the block: scanning it whole costs about what a copy would.
            hit = (table, table if pc.sum(mask).as_py() * 2 > table.num_rows else table.filter(mask))
        self._narrow[key] = hit  # most recent last
        while len(self._narrow) > 2:
            self._narrow.pop(next(iter(self._narrow)))
        return hit[1]

    def _drop_changed(self, current: dict[str, tuple[str, ...]]) -> None:
        """Forget held days whose files are no longer those listed (under ``_lock``)."""
        import pyarrow.compute as pc

        for block in list(self.blocks):
            changed = [day for day, paths in block.days.items() if current.get(day) != paths]
            if not changed:
                continue
            if len(changed) == len(block.days):
                self.blocks.remove(block)
                continue
            block.table = block.table.filter(pc.invert(pc.is_in(block.table.column("day"),
                                                                value_set=_date_array(changed))))
            block.rows = block.table.num_rows
            for day in changed:
                del block.days[day]
