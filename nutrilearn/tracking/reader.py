"""``PredictionReader``: logged predictions and feedback as pandas frames, for a window.

It answers from the mirror (``tracking.mirror``: a local, day-partitioned copy of every
batch run, brought up to date by ``refresh``) plus what still waits in this machine's
spool, through DuckDB (``monitoring.history``): a time window reads only its days, and
nothing is held in memory between calls. Pages and commands that draw figures should
ask ``history`` for aggregates; ``predictions`` is for the rows a figure really shows
(a drift window, an export), so give it a window and the columns you need.

Frames have one row per request id, oldest first; columns are the ``PredictionRecord``
fields (``FeedbackRecord`` fields plus ``kind`` for feedback); ``timestamp`` is
``datetime64[us, UTC]``. Filters are bound parameters, never spliced into a query or an
MLflow filter string.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from nutrilearn.config import Settings
from nutrilearn.tracking.records import ROW_FIELDS, as_utc

log = logging.getLogger(__name__)


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _utc(value: datetime | str | pd.Timestamp | None) -> datetime | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return as_utc(ts.to_pydatetime())


def mirror_dir_for(settings: Settings, tracking_uri: str, experiment: str) -> Path:
    """One mirror per store and experiment, so switching stores never mixes their rows."""
    key = hashlib.sha256(f"{tracking_uri}\n{experiment}".encode()).hexdigest()[:12]
    return settings.mirror_dir / key


class PredictionReader:
    """Windowed reads of every logged prediction and feedback record.

    Thread-safe; build one per process (``st.cache_resource`` in the app).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tracking_uri: str | None = None,
        spool_dir: Path | str | None = None,
        include_spool: bool = True,
        experiment_name: str | None = None,
        cache_dir: Path | str | None = None,
        hold_rows: bool = False,
    ):
        """``hold_rows``: ``history`` holds the days asked about in memory
        (the app: a page asks many questions of one window, then changes filters; see
        ``History``)."""
        from nutrilearn.monitoring.history import History
        from nutrilearn.tracking.mirror import Mirror

        settings = settings or Settings.from_env()
        self.tracking_uri = tracking_uri or settings.tracking_uri
        self.experiment_name = experiment_name or settings.predictions_experiment
        self.spool_dir = Path(spool_dir or settings.spool_dir) if include_spool else None
        directory = Path(cache_dir) if cache_dir else mirror_dir_for(settings, self.tracking_uri, self.experiment_name)
        self.mirror = Mirror(settings, directory=directory, tracking_uri=self.tracking_uri,
                             experiment_name=self.experiment_name)
        self.history = History(self.mirror, self.spool_dir, hold_rows=hold_rows)
        self._offline = History(self.mirror, None)  # the same, without the spool's rows
        self.last_error: str | None = None  # why the last refresh could not reach MLflow

    # -- public ------------------------------------------------------------------------

    def refresh(self) -> int:
        """Copy batch runs not mirrored yet; returns how many were new.

        A batch that cannot be copied now is tried again at the next refresh. When the
        tracking server does not answer, nothing is copied and ``last_error`` says why:
        reads keep answering from the mirror plus the local spool.
        """
        result = self.mirror.sync()
        if result.error and result.error != self.last_error:
            log.warning("%s; showing mirrored batches and spooled records", result.error)
        self.last_error = result.error
        return result.new_runs

    def _filters(self, start, end, model_version=None, user=None, include_replayed=True):
        from nutrilearn.monitoring.stats import Filters

        return Filters(start=_utc(start), end=_utc(end), model_versions=_as_tuple(model_version),
                       users=_as_tuple(user), hide_replayed=not include_replayed, include_shadow=True)

    def predictions(
        self,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        model_version: str | Iterable[str] | None = None,
        user: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None,
        include_replayed: bool = True,
        include_pending: bool = True,
        refresh: bool = True,
        columns: Sequence[str] = ROW_FIELDS,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Prediction records (shadow answers included), one row per request id, oldest first.

        ``start`` is inclusive, ``end`` exclusive (naive datetimes are taken as UTC);
        ``model_version``/``user``/``source`` take one value or several; ``limit`` keeps
        the newest rows only. Thumbnails are read only when ``columns`` names ``thumbnail``.
        """
        if refresh:
            self.refresh()
        history = self.history if include_pending else self._offline
        filters = self._filters(start, end, model_version, user, include_replayed)
        wanted = list(dict.fromkeys([*columns, "timestamp", "request_id", "source"]))
        df = history.rows(filters, columns=wanted, limit=limit, newest_first=limit is not None)
        sources = _as_tuple(source)
        if sources:
            df = df[df["source"].isin(sources)]
        if limit is not None:
            df = df.iloc[::-1]
        return df[list(columns)].reset_index(drop=True)

    def feedback(
        self,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        user: str | Iterable[str] | None = None,
        include_pending: bool = True,
        refresh: bool = True,
    ) -> pd.DataFrame:
        """Feedback records (latest per request id wins), oldest first."""
        if refresh:
            self.refresh()
        history = self.history if include_pending else self._offline
        return history.feedback(self._filters(start, end, user=user)).reset_index(drop=True)

    def batches(self, refresh: bool = True) -> pd.DataFrame:
        """One row per mirrored batch run (run id, kind, batch id, rows)."""
        if refresh:
            self.refresh()
        return self.mirror.runs_frame()

    def pending_count(self) -> int:
        """Records in the local spool that are not in MLflow yet."""
        return self.history.pending_count()

    def close(self) -> None:
        self.history.close()
        self._offline.close()
        self.mirror.close()


def load_predictions(settings: Settings | None = None, **filters) -> pd.DataFrame:
    """One-shot convenience: a fresh reader's ``predictions(**filters)``."""
    reader = PredictionReader(settings)
    try:
        return reader.predictions(**filters)
    finally:
        reader.close()
