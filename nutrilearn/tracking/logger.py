"""``PredictionLogger``: the prediction path's only contact with tracking.

``submit`` checks the record (``InvalidRecord`` for one that could never be written:
nothing is stored), appends it to the durable spool (~0.2 ms) and returns True once it is
durable. A background flusher thread turns spooled records into MLflow runs
(``writer.BatchWriter``), one run per batch (``batch_max_records`` or
``batch_max_age_s``, whichever comes first), in experiment ``nutrilearn-predictions``.

Idempotency. A batch's id is fixed in the spool before anything is written to MLflow, and
writing it twice never makes two FINISHED runs (see ``writer.py``). Readers read FINISHED
runs only and de-duplicate by ``request_id``, which covers the last corner (a lease that
ran out while its owner was still writing).

Failures.
* MLflow unreachable (an HTTP server is probed first, since MLflow's own client retries
  for minutes): the records stay in the spool and the flusher backs off (1 s doubling to
  60 s, with jitter). A restarted process flushes what was left.
* One batch fails while the store takes others: that batch alone backs off and the rest
  go on. Rows that can never be written are set aside at once as a dead letter; a batch
  that fails ``max_attempts`` times for no reason we can name is set aside whole, but only
  once another batch has been written since it first failed (so an outage of the store
  never turns everything into dead letters). ``Spool.retry_dead`` puts them back.
* The spool cannot store a record (a full disk): ``submit`` returns False, the record
  waits in memory (``not_durable``) and is retried; it is lost if the process ends first,
  and ``status()`` says so meanwhile. The caller decides what to tell its user.
"""

from __future__ import annotations

import atexit
import collections
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nutrilearn.config import Settings
from nutrilearn.tracking import store
from nutrilearn.tracking.records import FeedbackRecord, PredictionRecord, check_feedback, check_prediction
from nutrilearn.tracking.spool import Batch, DeadLetter, Spool, SpoolError, new_owner
from nutrilearn.tracking.writer import BatchWriter, PoisonRows

log = logging.getLogger(__name__)

_GROUP_SEP = "\x1f"
_MAX_UNSPOOLED = 10_000
_EXIT_FLUSH_S = 2.0
_CHECKPOINT_EVERY_S = 10.0
MAX_ATTEMPTS = 5


def prediction_group(record: PredictionRecord) -> str:
    """Records of one batch share model and source, so the run's tags describe all rows."""
    return _GROUP_SEP.join((record.model_name, record.model_version, record.model_alias, record.source))


@dataclass(frozen=True)
class LoggerStatus:
    """What the sidebar, Monitoring's health and ``nutrilearn flush-predictions`` show."""

    tracking_uri: str
    spool_path: str
    pending: int | None  # records durable in the spool, not yet in MLflow; None: spool unreadable
    oldest_pending_age_s: float | None
    flushed_records: int  # by this logger since it started
    flushed_batches: int
    last_flush_at: datetime | None  # when this logger last wrote a batch
    last_error: str | None
    reachable: bool | None  # None until the first attempt
    retry_in_s: float  # > 0 while backing off
    unspooled: int  # records the spool refused: in memory only, retried, lost if the process ends
    dropped: int = 0  # records lost: the in-memory queue overflowed while the spool refused
    spool_error: str | None = None  # why the spool could not be read or written, if it could not
    dead_batches: int = 0
    dead_records: int = 0
    batches_retrying: int = 0
    wal_bytes: int = 0
    checkpoint_error: str | None = None

    @property
    def healthy(self) -> bool:
        return (self.reachable is not False and self.unspooled == 0 and self.dropped == 0
                and self.spool_error is None and self.dead_batches == 0 and self.checkpoint_error is None)

    @property
    def problems(self) -> list[str]:
        """Each thing wrong, in words for a person, with what to do."""
        out = []
        if self.unspooled or self.dropped:
            what = f"{self.unspooled} record(s) could not be saved to the spool ({self.spool_error or 'write failed'})"
            if self.dropped:
                what += f"; {self.dropped} were lost"
            out.append(what + f". Free disk space at {self.spool_path}; they are retried while the app runs.")
        elif self.spool_error:
            out.append(f"The spool at {self.spool_path} cannot be read: {self.spool_error}.")
        if self.reachable is False:
            out.append(f"MLflow is unreachable ({self.last_error}); records wait in the spool, "
                       f"retrying in {self.retry_in_s:.0f} s.")
        if self.dead_batches:
            out.append(f"{self.dead_records} record(s) in {self.dead_batches} batch(es) failed to write and "
                       "were set aside: `nutrilearn flush-predictions --retry-dead-letters` tries them again.")
        if self.checkpoint_error:
            out.append(f"Spool checkpoints fail ({self.checkpoint_error}); its log file grows "
                       f"({self.wal_bytes / 1e6:.1f} MB).")
        return out


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
        max_attempts: int = MAX_ATTEMPTS,
        start: bool = True,
        prewarm: bool = False,
        writer: BatchWriter | None = None,
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
        self.max_attempts = max(1, max_attempts)
        self.writer = writer or BatchWriter(self.tracking_uri, experiment_name or settings.predictions_experiment,
                                            store.artifact_location(settings, self.tracking_uri))
        self.owner = new_owner()
        self._unspooled: collections.deque[tuple[str, str, str, bytes]] = collections.deque()
        self._dropped: collections.deque[str] = collections.deque(maxlen=1_000)  # ids, newest kept
        self._dropped_count = 0
        self._spool_error: str | None = None
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
        self._checkpointed_at: float | None = None  # time.monotonic() of the last checkpoint
        self._checkpoint_error: str | None = None
        self._written_at: float | None = None  # time.monotonic() of the last batch written
        self._failing_since: dict[str, float] = {}  # batch id -> monotonic time of its first failure here
        self._prewarm = prewarm
        if start:
            self.start()

    # -- the prediction path -----------------------------------------------------------

    def submit(self, record: PredictionRecord) -> bool:
        """Spool one prediction record; True once it is durable on disk.

        Raises ``InvalidRecord`` (nothing stored) for a record that could never be written.
        False means the spool refused it: it waits in memory (``not_durable``).
        """
        check_prediction(record)
        return self._append("predictions", prediction_group(record), record.request_id, record.to_json())

    def submit_feedback(self, feedback: FeedbackRecord) -> bool:
        """Spool one feedback record (joins its prediction on ``request_id``); as ``submit``."""
        check_feedback(feedback)
        return self._append("feedback", "feedback", feedback.request_id, feedback.to_json())

    def _append(self, kind: str, grp: str, request_id: str, payload: bytes) -> bool:
        try:
            self.spool.append(kind, grp, request_id, payload)
        except SpoolError as exc:
            # Never fail a prediction over bookkeeping: keep it in memory, say so, retry.
            with self._state_lock:
                if len(self._unspooled) >= _MAX_UNSPOOLED:
                    lost = self._unspooled.popleft()
                    self._dropped.append(lost[2])
                    self._dropped_count += 1
                    log.error("in-memory overflow: %s record %s was lost", lost[0], lost[2])
                self._unspooled.append((kind, grp, request_id, payload))
                self._spool_error = str(exc)
            log.warning("spool write failed, record kept in memory: %s", exc)
            return False
        if self._spool_error is not None and not self._unspooled:
            with self._state_lock:
                self._spool_error = None
        return True

    def not_durable(self) -> list[str]:
        """Request ids that are only in memory now (lost if the process ends) or were lost."""
        with self._state_lock:
            return [*self._dropped, *(item[2] for item in self._unspooled)]

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

        Ignores running backoffs (the flusher's and failed batches') for one attempt.
        Whatever is not written stays in the spool for the next flush (this process's
        flusher or the next process's); dead letters wait for ``Spool.retry_dead``.
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

    def dead_letters(self) -> list[DeadLetter]:
        """Batches set aside after failing to write (oldest first)."""
        return self.spool.dead_letters()

    def retry_dead_letters(self, batch_ids: list[str] | None = None) -> int:
        """Put dead letters back in line (all, or those named); returns how many records."""
        n = self.spool.retry_dead(batch_ids)
        self._wake.set()
        return n

    def spool_pending(self) -> int:
        """Records not in MLflow yet: durable in the spool plus those only in memory."""
        return self.spool.pending_count() + len(self._unspooled)

    def status(self) -> LoggerStatus:
        """A snapshot for status lines; never raises (a broken spool is reported, not hidden)."""
        spool_error = None
        try:
            stats = self.spool.stats()
        except Exception as exc:
            stats, spool_error = None, str(exc)
        with self._state_lock:
            retry = max(0.0, self._next_try - time.monotonic()) if self._backoff else 0.0
            return LoggerStatus(
                tracking_uri=self.tracking_uri, spool_path=str(self.spool.path),
                pending=None if stats is None else stats.pending,
                oldest_pending_age_s=(None if stats is None or stats.oldest_spooled_at is None
                                      else max(0.0, time.time() - stats.oldest_spooled_at)),
                flushed_records=self._flushed_records, flushed_batches=self._flushed_batches,
                last_flush_at=self._last_flush_at, last_error=self._last_error,
                reachable=self._reachable, retry_in_s=retry, unspooled=len(self._unspooled),
                dropped=self._dropped_count, spool_error=spool_error or self._spool_error,
                dead_batches=0 if stats is None else stats.dead_batches,
                dead_records=0 if stats is None else stats.dead_records,
                batches_retrying=0 if stats is None else stats.batches_retrying,
                wal_bytes=self.spool.wal_bytes(), checkpoint_error=self._checkpoint_error,
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
                if self._backoff and time.monotonic() < self._next_try and not self._ignore_backoff:
                    continue
            try:
                self._cycle()
            except Exception:  # the flusher must outlive any one failure
                log.exception("tracking flusher cycle failed")

    def _cycle(self) -> None:
        """Write every due batch; a failing batch backs off alone, an unreachable store stops the cycle."""
        with self._cycle_lock:
            through = self._force_seq
            forced = self._ignore_backoff
            tried: set[str] = set()
            failures: list[Exception] = []
            written_before = self._flushed_batches
            try:
                self._respool()
                if not self.spool.due(self.owner, max_records=self.batch_max_records,
                                      max_age_s=self.batch_max_age_s, flush_through=through, retry_now=forced):
                    self._succeeded()
                    return
                problem = store.probe(self.tracking_uri)
                if problem:
                    raise ConnectionError(problem)
                while True:
                    batch = self.spool.claim(self.owner, max_records=self.batch_max_records,
                                             max_age_s=self.batch_max_age_s, lease_s=self.lease_s,
                                             flush_through=through, retry_now=forced, skip=tried)
                    if batch is None:
                        break
                    error = self._write_one(batch)
                    if error is not None:
                        tried.add(batch.batch_id)
                        failures.append(error)
                if failures and self._flushed_batches == written_before:
                    raise failures[-1]  # nothing got through: back off as a whole too
                self._succeeded(partial=bool(failures))
            except Exception as exc:
                self._failed(exc)
            finally:
                self._checkpoint_if_due()

    def _write_one(self, batch: Batch) -> Exception | None:
        """Write one claimed batch; on failure give it back (or set it aside) and return why."""
        if not batch.rows:  # emptied (its rows set aside): nothing to write
            self.spool.complete(batch.batch_id)
            return None
        try:
            try:
                self.writer.write(batch, self.spool.write_position(batch.batch_id))
            except PoisonRows as exc:  # set the bad rows aside now; the rest goes at once
                self.spool.dead_letter(batch.batch_id, exc.reason, exc.seqs)
                if len(exc.seqs) >= len(batch):
                    self._failing_since.pop(batch.batch_id, None)
                return None  # the rest, if any, is re-taken by the next claim
            self._after_write(batch)
        except Exception as exc:
            self._batch_failed(batch, exc)
            return exc
        self._failing_since.pop(batch.batch_id, None)
        with self._state_lock:
            self._flushed_batches += 1
            self._flushed_records += len(batch)
            self._reachable = True
            self._last_flush_at = datetime.now(timezone.utc)
            self._written_at = time.monotonic()
        return None

    def _batch_failed(self, batch: Batch, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        unreachable = store.probe(self.tracking_uri) is not None
        if unreachable:  # not this batch's fault: no attempt counted, retried with everything else
            self.spool.release(batch.batch_id, self.owner, message, count_attempt=False)
            return
        now = time.monotonic()
        first = self._failing_since.setdefault(batch.batch_id, now)
        attempts = self.spool.release(batch.batch_id, self.owner, message,
                                      retry_in_s=self._delay(batch.attempts + 1))
        store_works = self._written_at is not None and self._written_at > first
        if attempts >= self.max_attempts and store_works:
            self.spool.dead_letter(batch.batch_id, message)
            self._failing_since.pop(batch.batch_id, None)
        else:
            log.warning("batch %s failed (attempt %d): %s", batch.batch_id, attempts, message)

    def _delay(self, attempts: int) -> float:
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)

    def _checkpoint_if_due(self) -> None:
        """Fold the spool's WAL in every ``_CHECKPOINT_EVERY_S``, even while MLflow is down."""
        now = time.monotonic()
        if self._checkpointed_at is not None and now - self._checkpointed_at < _CHECKPOINT_EVERY_S:
            return
        self._checkpointed_at = now
        try:
            self.spool.checkpoint()
            self._checkpoint_error = None
        except SpoolError as exc:
            if str(exc) != self._checkpoint_error:
                log.error("%s", exc)
            self._checkpoint_error = str(exc)

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
            if self._spool_error is not None:
                with self._state_lock:
                    self._spool_error = None

    def _succeeded(self, partial: bool = False) -> None:
        with self._state_lock:
            if self._backoff:
                log.info("MLflow reachable again at %s", self.tracking_uri)
            self._backoff = 0.0
            self._next_try = 0.0
            if not partial:
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
