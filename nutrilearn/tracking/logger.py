"""``PredictionLogger``: the prediction path's only contact with tracking.

``submit`` appends the record to the durable spool (an fsync'd SQLite commit, ~0.2 ms)
and returns. A background flusher thread turns spooled records into MLflow runs, one
run per batch (``batch_max_records`` or ``batch_max_age_s``, whichever comes first), in
experiment ``nutrilearn-predictions``:

* run name ``predictions 2026-11-27 10:00-10:05 (500)``; tags ``model_name``,
  ``model_version``, ``model_alias``, ``source``, ``replayed``, ``nutrilearn.kind``,
  ``nutrilearn.batch_id``; metrics ``count``, ``errors``, ``error_rate``,
  ``mean_confidence``, ``p50_latency_ms``, ``p95_latency_ms``, ``food_share``, ``users``;
* the rows as the artifact ``predictions.parquet`` (feedback: ``feedback.parquet`` in
  runs of their own, ``nutrilearn.kind = feedback``).

Idempotency. A batch's id is fixed in the spool before anything is written to MLflow.
Writing a batch first looks for a run carrying that id: a FINISHED one means an earlier
attempt got as far as MLflow but not as far as the spool bookkeeping (a crash, a full
disk), so the records are only marked done; an unfinished one (a crash mid-write) is
marked FAILED and written again. Readers read FINISHED runs only and de-duplicate by
``request_id``, which covers the last corner (a lease that ran out while its owner was
still writing).

Failures. When MLflow is unreachable (an HTTP server is probed first, since MLflow's own
client retries for minutes) the records stay in the spool, and the flusher retries with
exponential backoff (1 s doubling to 60 s, with jitter). A restarted process flushes
what was left, including batches claimed by a process that died.
"""

from __future__ import annotations

import atexit
import collections
import logging
import random
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nutrilearn.config import Settings
from nutrilearn.tracking import store
from nutrilearn.tracking.records import (
    STATUS_OK,
    FeedbackRecord,
    PredictionRecord,
    row_from_json,
    rows_to_table,
)
from nutrilearn.tracking.spool import Batch, Spool, SpoolError, new_owner

log = logging.getLogger(__name__)

_GROUP_SEP = "\x1f"
_MAX_UNSPOOLED = 10_000
_EXIT_FLUSH_S = 2.0
_CHECKPOINT_EVERY_S = 10.0


def prediction_group(record: PredictionRecord) -> str:
    """Records of one batch share model and source, so the run's tags describe all rows."""
    return _GROUP_SEP.join((record.model_name, record.model_version, record.model_alias, record.source))


@dataclass(frozen=True)
class LoggerStatus:
    """What the sidebar and ``nutrilearn flush-predictions`` show."""

    tracking_uri: str
    spool_path: str
    pending: int  # records in the spool, not yet in MLflow
    oldest_pending_age_s: float | None
    flushed_records: int  # by this logger since it started
    flushed_batches: int
    last_flush_at: datetime | None  # when this logger last wrote a batch
    last_error: str | None
    reachable: bool | None  # None until the first attempt
    retry_in_s: float  # > 0 while backing off
    unspooled: int  # records the spool refused (kept in memory, retried)

    @property
    def healthy(self) -> bool:
        return self.reachable is not False and self.unspooled == 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def batch_metrics(kind: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The aggregate metrics of one batch run."""
    n = len(rows)
    if kind == "feedback":
        corrected = sum(r["label"] != r.get("predicted_label") for r in rows)
        return {"count": n, "corrected": corrected, "confirmed": n - corrected,
                "correction_rate": corrected / n if n else 0.0}
    ok = [r for r in rows if r["status"] == STATUS_OK]
    conf = [r["confidence"] for r in ok if r.get("confidence") is not None]
    latency = [r["total_ms"] for r in rows if r.get("total_ms") is not None]
    metrics = {"count": n, "errors": n - len(ok), "error_rate": (n - len(ok)) / n if n else 0.0,
               "users": len({r["user"] for r in rows})}
    if conf:
        metrics["mean_confidence"] = sum(conf) / len(conf)
    if latency:
        metrics["p50_latency_ms"] = _percentile(latency, 0.5)
        metrics["p95_latency_ms"] = _percentile(latency, 0.95)
    if ok:
        metrics["food_share"] = sum(bool(r.get("is_food")) for r in ok) / len(ok)
    return metrics


def run_name(kind: str, first: datetime, last: datetime, n: int) -> str:
    """``predictions 2026-11-27 10:00-10:05 (500)`` (UTC); the date twice across midnight."""
    end = f"{last:%H:%M}" if first.date() == last.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"{kind} {first:%Y-%m-%d %H:%M}-{end} ({n})"


class BatchWriter:
    """Writes one claimed batch as one MLflow run; safe to call again for the same batch."""

    def __init__(self, tracking_uri: str, experiment_name: str, location: str | None):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.location = location
        self._client = None
        self._experiment_id: str | None = None

    def _ready(self):
        if self._client is None:
            self._client = store.make_client(self.tracking_uri)
        if self._experiment_id is None:
            self._experiment_id = store.get_experiment_id(self._client, self.experiment_name, self.location, True)
        return self._client, self._experiment_id

    def find_runs(self, batch_id: str) -> list:
        client, exp_id = self._ready()
        flt = f"tags.`{store.TAG_BATCH_ID}` = '{store.check_batch_id(batch_id)}'"
        return list(client.search_runs([exp_id], filter_string=flt, max_results=50))

    def write(self, batch: Batch) -> tuple[str, bool]:
        """``(run_id, written)``; ``written`` is False when an earlier attempt already finished."""
        client, exp_id = self._ready()
        earlier = self.find_runs(batch.batch_id)
        for run in earlier:
            if run.info.status == "FINISHED":
                return run.info.run_id, False
        for run in earlier:  # a crash mid-write: leave it visible as FAILED, write afresh
            client.set_terminated(run.info.run_id, "FAILED")
        rows = [row_from_json(r.payload) for r in batch.rows]
        first = min(r["timestamp"] for r in rows)
        last = max(r["timestamp"] for r in rows)
        tags = {
            store.TAG_KIND: batch.kind, store.TAG_BATCH_ID: batch.batch_id,
            store.TAG_SCHEMA: store.SCHEMA_VERSION,
            store.TAG_FIRST_TS: first.isoformat(), store.TAG_LAST_TS: last.isoformat(),
            "spool_host": socket.gethostname(),
        }
        metrics = batch_metrics(batch.kind, rows)
        if batch.kind == "predictions":
            head = rows[0]
            tags.update(model_name=head["model_name"], model_version=head["model_version"],
                        model_alias=head["model_alias"], source=head["source"],
                        replayed=str(head["source"] == "replay").lower())
            note = (f"{len(rows)} predictions by {head['model_name']} v{head['model_version']} "
                    f"({head['model_alias']}), source {head['source']}, {int(metrics['errors'])} errors; "
                    f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC. Rows: predictions.parquet")
        else:
            note = f"{len(rows)} feedback records; rows: feedback.parquet"
        tags["mlflow.note.content"] = note
        run = client.create_run(exp_id, tags=tags, run_name=run_name(batch.kind, first, last, len(rows)))
        run_id = run.info.run_id
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()])
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(prefix="nutrilearn-batch-") as tmp:
            path = Path(tmp) / store.ARTIFACTS[batch.kind]
            pq.write_table(rows_to_table(rows, batch.kind), path, compression="snappy")  # reads faster than zstd
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")
        return run_id, True


class PredictionLogger:
    """Durable, asynchronous, batched logging of predictions and feedback to MLflow.

    Thread-safe; build one per process (``nutrilearn.serving.prediction_logger``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tracking_uri: str | None = None,
        spool_dir: Path | str | None = None,
        experiment_name: str | None = None,
        batch_max_records: int | None = None,
        batch_max_age_s: float | None = None,
        lease_s: float = 300.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        poll_s: float = 0.5,
        start: bool = True,
        prewarm: bool = False,
    ):
        settings = settings or Settings.from_env()
        self.tracking_uri = tracking_uri or settings.tracking_uri
        self.spool = Spool(spool_dir or settings.spool_dir, sync=settings.spool_sync)
        self.batch_max_records = max(1, batch_max_records or settings.batch_max_records)
        self.batch_max_age_s = settings.batch_max_age_s if batch_max_age_s is None else batch_max_age_s
        self.lease_s = lease_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.writer = BatchWriter(self.tracking_uri, experiment_name or settings.predictions_experiment,
                                  store.artifact_location(settings, self.tracking_uri))
        self.owner = new_owner()
        self._unspooled: collections.deque[tuple[str, str, str, bytes]] = collections.deque()
        self._state_lock = threading.Lock()
        self._cycle_lock = threading.Lock()
        self._respool_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._force_seq = 0
        self._ignore_backoff = False
        self._backoff = 0.0
        self._next_try = 0.0
        self._last_error: str | None = None
        self._reachable: bool | None = None
        self._last_flush_at: datetime | None = None
        self._flushed_records = 0
        self._flushed_batches = 0
        self._thread: threading.Thread | None = None
        self._checkpointed_at = 0.0
        self._prewarm = prewarm
        if start:
            self.start()

    # -- the prediction path -----------------------------------------------------------

    def submit(self, record: PredictionRecord) -> bool:
        """Spool one prediction record; True once it is durable on disk."""
        return self._append("predictions", prediction_group(record), record.request_id, record.to_json())

    def submit_feedback(self, feedback: FeedbackRecord) -> bool:
        """Spool one feedback record (joins its prediction on ``request_id``)."""
        return self._append("feedback", "feedback", feedback.request_id, feedback.to_json())

    def _append(self, kind: str, grp: str, request_id: str, payload: bytes) -> bool:
        try:
            self.spool.append(kind, grp, request_id, payload)
            return True
        except SpoolError as exc:
            # Never fail a prediction over bookkeeping: keep it in memory, say so, retry.
            with self._state_lock:
                if len(self._unspooled) >= _MAX_UNSPOOLED:
                    self._unspooled.popleft()
                    log.error("in-memory overflow: a %s record was dropped", kind)
                self._unspooled.append((kind, grp, request_id, payload))
                self._last_error = str(exc)
            log.warning("spool write failed, record kept in memory: %s", exc)
            return False

    # -- flushing ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="nutrilearn-flusher", daemon=True)
        self._thread.start()
        _live_loggers.add(self)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything spooled so far to MLflow now; True if it all got there in time.

        Ignores a running backoff for one attempt. Whatever is not written stays in the
        spool for the next flush (this process's flusher or the next process's).
        """
        try:
            self._respool()  # records the spool refused earlier get their sequence numbers now
        except SpoolError:
            pass
        target = self.spool.max_seq()
        with self._state_lock:
            self._force_seq = max(self._force_seq, target)
            self._ignore_backoff = True
        deadline = time.monotonic() + timeout
        if self._thread is None or not self._thread.is_alive():
            self._cycle()
        else:
            self._wake.set()
        while True:
            if not self._unspooled and self.spool.pending_count(up_to_seq=target) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            if self._thread is None or not self._thread.is_alive():
                return False
            with self._state_lock:
                gave_up = not self._ignore_backoff and self._backoff > 0 and self._next_try > time.monotonic()
            if gave_up:  # the forced attempt failed: do not wait out the backoff
                return False
            time.sleep(0.02)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush (up to ``timeout``), stop the flusher and release this process's batches."""
        if self._stop:
            return True
        start = time.monotonic()
        flushed = False
        try:
            flushed = self.flush(timeout)
        except SpoolError:
            pass
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout - (time.monotonic() - start)) + 0.5)
        _live_loggers.discard(self)
        if self._thread is None or not self._thread.is_alive():
            self.spool.release_all(self.owner)
            self.spool.close()
        return flushed

    def __enter__(self) -> "PredictionLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def spool_pending(self) -> int:
        return self.spool.pending_count() + len(self._unspooled)

    def status(self) -> LoggerStatus:
        try:
            stats = self.spool.stats()
            pending, oldest = stats.pending, stats.oldest_spooled_at
        except Exception:  # a status line must never raise
            pending, oldest = -1, None
        with self._state_lock:
            retry = max(0.0, self._next_try - time.monotonic()) if self._backoff else 0.0
            return LoggerStatus(
                tracking_uri=self.tracking_uri, spool_path=str(self.spool.path),
                pending=pending + len(self._unspooled),
                oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                flushed_records=self._flushed_records, flushed_batches=self._flushed_batches,
                last_flush_at=self._last_flush_at, last_error=self._last_error,
                reachable=self._reachable, retry_in_s=retry, unspooled=len(self._unspooled),
            )

    def _loop(self) -> None:
        if self._prewarm:  # import MLflow and open the store now, not at the first flush
            try:
                with self._cycle_lock:
                    if store.probe(self.tracking_uri) is None:
                        self.writer._ready()
            except Exception as exc:  # the first real attempt reports it
                log.debug("prewarm failed: %s", exc)
        while not self._stop:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop:
                break
            with self._state_lock:
                if time.monotonic() < self._next_try and not self._ignore_backoff:
                    continue
            try:
                self._cycle()
            except Exception:  # the flusher must outlive any one failure
                log.exception("tracking flusher cycle failed")

    def _cycle(self) -> None:
        """Write every due batch; on failure leave the rest in the spool and back off."""
        with self._cycle_lock:
            through = self._force_seq
            batch: Batch | None = None
            try:
                self._respool()
                if not self.spool.due(self.owner, max_records=self.batch_max_records,
                                      max_age_s=self.batch_max_age_s, flush_through=through):
                    self._succeeded()
                    return
                problem = store.probe(self.tracking_uri)
                if problem:
                    raise ConnectionError(problem)
                while True:
                    batch = self.spool.claim(self.owner, max_records=self.batch_max_records,
                                             max_age_s=self.batch_max_age_s, lease_s=self.lease_s,
                                             flush_through=through)
                    if batch is None:
                        break
                    self.writer.write(batch)
                    self._after_write(batch)
                    with self._state_lock:
                        self._flushed_batches += 1
                        self._flushed_records += len(batch)
                        self._reachable = True
                        self._last_flush_at = datetime.now(timezone.utc)
                    batch = None
                self._succeeded()
            except Exception as exc:
                if batch is not None:
                    self.spool.release(batch.batch_id, self.owner, f"{type(exc).__name__}: {exc}")
                self._failed(exc)
            finally:
                if time.monotonic() - self._checkpointed_at > _CHECKPOINT_EVERY_S:
                    self.spool.checkpoint()  # even while MLflow is down, so the WAL stays small
                    self._checkpointed_at = time.monotonic()

    def _after_write(self, batch: Batch) -> None:
        """The MLflow run exists: drop the records from the spool (a seam for fault tests)."""
        self.spool.complete(batch.batch_id)

    def _respool(self) -> None:
        with self._respool_lock:
            while self._unspooled:
                kind, grp, rid, payload = self._unspooled[0]
                self.spool.append(kind, grp, rid, payload)
                with self._state_lock:
                    self._unspooled.popleft()

    def _succeeded(self) -> None:
        with self._state_lock:
            if self._backoff:
                log.info("MLflow reachable again at %s", self.tracking_uri)
            self._backoff = 0.0
            self._next_try = 0.0
            self._last_error = None
            self._ignore_backoff = False
            if self._force_seq and self.spool.pending_count(up_to_seq=self._force_seq) == 0:
                self._force_seq = 0

    def _failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        with self._state_lock:
            self._backoff = min(self.backoff_max_s, self._backoff * 2 if self._backoff else self.backoff_initial_s)
            self._next_try = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)
            if isinstance(exc, (ConnectionError, OSError)) or "connect" in message.lower():
                self._reachable = False
            self._last_error = message
            self._ignore_backoff = False
        log.warning("could not write predictions to MLflow (%s); retrying in %.1f s", message, self._backoff)


# Loggers still running at interpreter exit get a short last flush; the rest waits in the spool.
_live_loggers: "weakref.WeakSet[PredictionLogger]" = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for logger in list(_live_loggers):
        try:
            logger.close(timeout=_EXIT_FLUSH_S)
        except Exception:
            pass
