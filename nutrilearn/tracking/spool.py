"""The durable local spool: every record lands here before anything talks to MLflow.

One SQLite file, ``<spool_dir>/spool.db``, in WAL mode. Three durability modes
(``NUTRILEARN_SPOOL_SYNC``):

- ``group`` (default): commits go to the WAL without waiting for the disk, and a
  background thread fsyncs the WAL every ``GROUP_COMMIT_S`` (50 ms) when something was
  appended: group commit, as PostgreSQL's ``wal_writer_delay``. An acknowledged record
  survives kill -9 at once (it is in the OS's page cache) and a power cut once the next
  group sync ran, 50 ms at most later. Keeps the prediction path off the disk's fsync
  tail (p99 ~1 ms instead of ~8 ms on these machines).
- ``full``: ``synchronous=FULL``, every ``append`` returns after its own fsync.
- ``normal``: no fsync of ours at all (SQLite syncs at checkpoints); for slow disks.

SQLite's own locking makes it safe for several processes (app
workers, CLI runs) on one machine to share one spool; it is not meant for a network
filesystem.

Tables::

    records(seq, kind, grp, request_id, spooled_at, payload, batch_id)
    batches(batch_id, kind, grp, created_at, n, owner, lease_until, attempts, last_error, write_seq)
    dead_letters(batch_id, kind, grp, n, attempts, last_error, dead_at)
    meta(key, value)        format, writer_id, next_write_seq

A flusher *claims* a batch in one transaction: the oldest unassigned rows of one group
(``kind`` + ``grp``, e.g. one model version and source) get a ``batch_id`` derived from
their request ids, and a ``batches`` row records the owner and a lease. The batch id is
fixed from then on: whoever writes it to MLflow (the owner, or after a crash whoever
re-takes it) uses the same id, which is what makes the MLflow write idempotent (see
``logger.py``). ``complete`` deletes the rows and the batch in one transaction.

A batch is re-taken when its owner released it and its retry time has come (a failed
write backs off per batch, so one bad batch never holds up the others), when its lease
ran out, or at once when its owner was a process on this host that no longer exists. A
batch that keeps failing is moved to ``dead_letters`` (``dead_letter``) with its records;
``retry_dead`` puts it back on demand.

Write positions. Every batch gets a *write sequence number* from this spool's counter
when it is first written (``write_position``), and each run says the lowest number still
open in the spool (``open_from``). Every number below that is closed for good: written,
or given up (a dead letter gets a new number when retried). A reader that has seen
``open_from = F`` from a writer needs only that writer's runs numbered ``F`` and up, so it
finds every run exactly once without trusting anybody's clock (``reader.py``).

Connections come from a pool and go back to it after each call, so a process that calls
in from many short-lived threads (Streamlit runs every rerun in a new thread) holds as
many connections as calls ever ran at once, never one per thread it has seen. (They are
kept rather than closed after a burst: SQLite cannot close the file of one connection
while another holds a lock on it, so open-close churn leaves file handles behind.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SPOOL_FILE = "spool.db"
FORMAT_VERSION = "1"
KINDS = ("predictions", "feedback")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    grp        TEXT NOT NULL,
    request_id TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    payload    BLOB NOT NULL,
    batch_id   TEXT
);
CREATE INDEX IF NOT EXISTS records_by_batch ON records (batch_id, kind, grp, seq);
CREATE TABLE IF NOT EXISTS batches (
    batch_id    TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    grp         TEXT NOT NULL,
    created_at  REAL NOT NULL,
    n           INTEGER NOT NULL,
    owner       TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    batch_id   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    grp        TEXT NOT NULL,
    n          INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    dead_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after format 1 first shipped: added in place to an older spool file.
_ADDED_COLUMNS = {"batches": {"write_seq": "INTEGER"}}
_LIVE = "(batch_id IS NULL OR batch_id NOT IN (SELECT batch_id FROM dead_letters))"

log = logging.getLogger(__name__)

SYNC_MODES = ("group", "full", "normal")
GROUP_COMMIT_S = 0.05
_WAL_LIMIT_BYTES = 8 * 1024 * 1024


class SpoolError(RuntimeError):
    """The spool could not store or hand out records."""


@dataclass(frozen=True)
class SpooledRow:
    seq: int
    request_id: str
    payload: bytes


@dataclass(frozen=True)
class Batch:
    """Records claimed together; ``batch_id`` never changes once claimed."""

    batch_id: str
    kind: str
    grp: str
    rows: tuple[SpooledRow, ...]
    attempts: int = 0

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class SpoolStats:
    pending: int  # live records not yet completed (claimed ones included, dead letters not)
    claimed: int  # of which in a batch under way
    oldest_spooled_at: float | None  # epoch seconds
    batches_retrying: int  # batches that failed at least once and are still retried
    dead_batches: int = 0  # set aside after failing too often: wait for ``retry_dead``
    dead_records: int = 0
    wal_bytes: int = 0  # size of the write-ahead log (checkpoints keep it small)


@dataclass(frozen=True)
class DeadLetter:
    batch_id: str
    kind: str
    grp: str
    n: int
    attempts: int
    last_error: str | None
    dead_at: float  # epoch seconds


@dataclass(frozen=True)
class WritePosition:
    """Where a batch stands in this spool's write order (see the module docstring)."""

    writer_id: str
    seq: int
    open_from: int


def batch_id_for(kind: str, grp: str, request_ids: list[str]) -> str:
    """Deterministic: the same records always make the same id (32 hex digits)."""
    h = hashlib.sha256(f"{kind}\n{grp}\n".encode())
    for rid in request_ids:
        h.update(rid.encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def new_owner() -> str:
    """``host|pid|token``: one per flusher instance, so leases tell owners apart."""
    return f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:12]}"


def _owner_is_dead(owner: str) -> bool:
    """True only when the owner was a process on this host that no longer exists."""
    try:
        host, pid, _ = owner.split("|")
        pid_n = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or pid_n == os.getpid():
        return False
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _is_free(current: str | None, owner: str, lease_until: float, now: float) -> bool:
    """May ``owner`` take a batch now? Released ones wait out their retry time."""
    if current is None:
        return lease_until <= now
    return current == owner or lease_until < now or _owner_is_dead(current)


class Spool:
    """A durable append-only queue of encoded records, shared safely between processes.

    Calls borrow a connection from a small pool, so the prediction path (``append``)
    never waits behind a flusher's Python code, only behind SQLite's short write locks.
    """

    def __init__(self, directory: Path | str, *, sync: str = "group", busy_timeout_s: float = 30.0):
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, got {sync!r}")
        self.sync = sync
        self._pragma = "FULL" if sync == "full" else "NORMAL"
        self._dirty = threading.Event()
        self._syncer: threading.Thread | None = None
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.wal_path = self.path.with_name(self.path.name + "-wal")
        self.busy_timeout_s = busy_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._opened = 0  # connections open now (idle or lent out)
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._connection() as conn:
                with self._write(conn, sync=self._pragma, restore=self._pragma):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    for table, columns in _ADDED_COLUMNS.items():
                        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                        for name, decl in columns.items():
                            if name not in have:
                                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (FORMAT_VERSION,))
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('writer_id', ?)",
                                 (uuid.uuid4().hex,))
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_write_seq', '1')")
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot set up the spool at {self.path}: {exc}") from exc
        if meta["format"] != FORMAT_VERSION:
            raise SpoolError(f"{self.path} has spool format {meta['format']}; this version reads {FORMAT_VERSION}")
        self.writer_id: str = meta["writer_id"]
        if sync == "group":
            self._syncer = threading.Thread(target=self._group_sync_loop, name="spool-group-sync", daemon=True)
            self._syncer.start()

    # -- group commit ------------------------------------------------------------------

    def sync_wal(self) -> None:
        """fsync the WAL now: everything appended so far survives a power cut."""
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing written since the last checkpoint truncated it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _group_sync_loop(self) -> None:
        while not self._closed:
            if self._dirty.wait(0.5) and not self._closed:
                time.sleep(GROUP_COMMIT_S)  # gather the appends of the next 50 ms into one fsync
                self._dirty.clear()
                try:
                    self.sync_wal()
                except OSError as exc:  # the next append retries; the records are in the WAL
                    log.warning("spool group sync failed: %s", exc)

    # -- connections -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            self._ensure_wal(conn)
            conn.execute(f"PRAGMA synchronous={self._pragma}")
            # Checkpoints run from the flusher (``checkpoint``), never on the prediction path.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")  # a checkpoint shrinks the WAL back
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode (it stays so, in the file). Setting it takes an
        exclusive lock and SQLite answers "database is locked" at once, without waiting
        out the busy timeout, while another process opens the same new spool: so read the
        mode first (set already: nothing to do) and retry within the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.01
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one call; it goes back to the pool (or is closed) after."""
        with self._lock:
            if self._closed:
                raise SpoolError("the spool is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._opened += 1
        if conn is None:
            try:
                conn = self._open()
            except sqlite3.Error as exc:
                with self._lock:
                    self._opened -= 1
                raise SpoolError(f"cannot open the spool at {self.path}: {exc}") from exc
        try:
            yield conn
        finally:
            if conn.in_transaction:  # an error between BEGIN and COMMIT: never lend that out
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            with self._lock:
                keep = not self._closed
                if keep:
                    self._idle.append(conn)
                else:
                    self._opened -= 1
            if not keep:
                conn.close()

    @property
    def open_connections(self) -> int:
        """Connections this object holds open now (for leak tests and the soak bench)."""
        with self._lock:
            return self._opened

    class _write:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error): one writer at a time.

        Bookkeeping (claim, complete, release) commits without an fsync of its own, so the
        write lock it holds is short and never makes a waiting ``append`` wait for the disk
        twice. It still reaches the disk with the next appended record's fsync (the WAL is
        sequential), and losing it to a power cut is harmless: a lost claim or release is
        re-done, a lost complete is re-done after MLflow shows the batch's run, and readers
        drop any duplicate by request id.
        """

        def __init__(self, conn: sqlite3.Connection, sync: str = "NORMAL", restore: str = "FULL"):
            self.conn, self.sync, self.restore = conn, sync, restore

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute(f"PRAGMA synchronous={self.sync}")
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.conn.execute(f"PRAGMA synchronous={self.restore}")

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on a pooled connection; SQLite errors become ``SpoolError``."""
        try:
            with self._connection() as conn, self._write(conn, restore=self._pragma):
                yield conn
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot {what} in {self.path}: {exc}") from exc

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            with self._connection() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read the spool at {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._syncer is not None and self._dirty.is_set():
            try:
                self.sync_wal()
            except OSError:
                pass
        with self._lock:
            self._closed = True
            conns, self._idle = self._idle, []
            self._opened -= len(conns)
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        if self._syncer is not None and self._syncer is not threading.current_thread():
            self._dirty.set()  # wake it so it sees _closed and ends
            self._syncer.join(2.0)

    # -- the prediction path -----------------------------------------------------------

    def append(self, kind: str, grp: str, request_id: str, payload: bytes) -> int:
        """Store one record durably (see the module's sync modes); return its sequence number."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        try:
            with self._connection() as conn:
                cur = conn.execute(
                    "INSERT INTO records (kind, grp, request_id, spooled_at, payload) VALUES (?, ?, ?, ?, ?)",
                    (kind, grp, request_id, time.time(), payload),
                )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to the spool at {self.path}: {exc}") from exc
        if self._syncer is not None:
            self._dirty.set()
        return int(cur.lastrowid)

    # -- the flusher -------------------------------------------------------------------

    def claim(self, owner: str, *, max_records: int, max_age_s: float, lease_s: float,
              force: bool = False, flush_through: int = 0, now: float | None = None,
              retry_now: bool = False, skip: frozenset[str] | set[str] = frozenset()) -> Batch | None:
        """The next batch to write, or None when nothing is due.

        First a batch left behind (released and due for a retry, or at once with
        ``retry_now``; lease run out; owner process gone; or our own after a failed
        bookkeeping step), except those in ``skip``; else a new one from a group that is
        full (``max_records``), old enough (``max_age_s``), holding a record numbered up
        to ``flush_through`` (a ``flush()``), or anything at all when ``force``.
        """
        now = time.time() if now is None else now
        with self._transaction("claim a batch") as conn:
            batch = self._retake(conn, owner, now, lease_s, retry_now, skip)
            if batch is None:
                batch = self._new_batch(conn, owner, now, lease_s, max_records, max_age_s,
                                        force, flush_through)
            return batch

    def _retake(self, conn, owner: str, now: float, lease_s: float, retry_now: bool = False,
                skip: frozenset[str] | set[str] = frozenset()) -> Batch | None:
        rows = conn.execute(
            "SELECT batch_id, kind, grp, owner, lease_until, attempts FROM batches ORDER BY created_at"
        ).fetchall()
        for batch_id, kind, grp, current, lease_until, attempts in rows:
            if batch_id in skip or not _is_free(current, owner, 0.0 if retry_now and current is None
                                                else lease_until, now):
                continue
            conn.execute("UPDATE batches SET owner = ?, lease_until = ? WHERE batch_id = ?",
                         (owner, now + lease_s, batch_id))
            records = conn.execute(
                "SELECT seq, request_id, payload FROM records WHERE batch_id = ? ORDER BY seq", (batch_id,)
            ).fetchall()
            return Batch(batch_id, kind, grp, tuple(SpooledRow(*r) for r in records), attempts)
        return None

    def _new_batch(self, conn, owner, now, lease_s, max_records, max_age_s, force, flush_through) -> Batch | None:
        for kind, grp, count, oldest, first_seq in self._groups(conn):
            if not (force or count >= max_records or now - oldest >= max_age_s or first_seq <= flush_through):
                continue
            records = conn.execute(
                "SELECT seq, request_id, payload FROM records WHERE batch_id IS NULL AND kind = ? AND grp = ? "
                "ORDER BY seq LIMIT ?", (kind, grp, max_records)
            ).fetchall()
            batch_id = self._unused_id(conn, kind, grp, [r[1] for r in records])
            conn.execute(
                "INSERT INTO batches (batch_id, kind, grp, created_at, n, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch_id, kind, grp, now, len(records), owner, now + lease_s),
            )
            conn.execute("UPDATE records SET batch_id = ? WHERE batch_id IS NULL AND kind = ? AND grp = ? "
                         "AND seq <= ?", (batch_id, kind, grp, records[-1][0]))
            return Batch(batch_id, kind, grp, tuple(SpooledRow(*r) for r in records))
        return None

    @staticmethod
    def _unused_id(conn, kind: str, grp: str, request_ids: list[str]) -> str:
        """``batch_id_for`` the rows; rows are claimed once, so the id is new unless the
        same request ids were appended twice and an identical batch is still open (or set
        aside): derive another id then."""
        batch_id = batch_id_for(kind, grp, request_ids)
        while conn.execute("SELECT 1 FROM batches WHERE batch_id = ? UNION ALL "
                           "SELECT 1 FROM dead_letters WHERE batch_id = ?", (batch_id, batch_id)).fetchone():
            batch_id = batch_id_for(kind, grp, [batch_id])
        return batch_id

    @staticmethod
    def _groups(conn) -> list[tuple]:
        return conn.execute(
            "SELECT kind, grp, COUNT(*), MIN(spooled_at), MIN(seq) FROM records WHERE batch_id IS NULL "
            "GROUP BY kind, grp ORDER BY MIN(seq)"
        ).fetchall()

    def due(self, owner: str, *, max_records: int, max_age_s: float, force: bool = False,
            flush_through: int = 0, now: float | None = None, retry_now: bool = False) -> bool:
        """Read-only (never blocks writers): would ``claim`` find something to do?"""
        now = time.time() if now is None else now
        try:
            with self._connection() as conn:
                for current, lease_until in conn.execute("SELECT owner, lease_until FROM batches").fetchall():
                    if _is_free(current, owner, 0.0 if retry_now and current is None else lease_until, now):
                        return True
                for _, _, count, oldest, first_seq in self._groups(conn):
                    if force or count >= max_records or now - oldest >= max_age_s or first_seq <= flush_through:
                        return True
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read the spool at {self.path}: {exc}") from exc
        return False

    def write_position(self, batch_id: str) -> WritePosition:
        """The batch's write sequence number (given once, kept across retries) and the
        lowest number still open in this spool."""
        with self._transaction("number a batch") as conn:
            row = conn.execute("SELECT write_seq FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                raise SpoolError(f"batch {batch_id} is not open in {self.path}")
            seq = row[0]
            if seq is None:
                seq = int(conn.execute("SELECT value FROM meta WHERE key = 'next_write_seq'").fetchone()[0])
                conn.execute("UPDATE meta SET value = ? WHERE key = 'next_write_seq'", (str(seq + 1),))
                conn.execute("UPDATE batches SET write_seq = ? WHERE batch_id = ?", (seq, batch_id))
            open_from = conn.execute("SELECT MIN(write_seq) FROM batches").fetchone()[0]
        return WritePosition(self.writer_id, int(seq), int(open_from))

    def complete(self, batch_id: str) -> None:
        """The batch is in MLflow: forget its records (one transaction)."""
        with self._transaction(f"complete batch {batch_id}") as conn:
            conn.execute("DELETE FROM records WHERE batch_id = ?", (batch_id,))
            conn.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))

    def release(self, batch_id: str, owner: str, error: str | None = None, *,
                retry_in_s: float = 0.0, count_attempt: bool = True) -> int:
        """Writing failed: give the batch back (same id, same records) for a try in
        ``retry_in_s`` seconds; returns the batch's failed attempts so far (-1 if unknown)."""
        try:
            with self._transaction(f"release batch {batch_id}") as conn:
                conn.execute(
                    "UPDATE batches SET owner = NULL, lease_until = ?, attempts = attempts + ?, last_error = ? "
                    "WHERE batch_id = ? AND owner = ?",
                    (time.time() + retry_in_s, int(count_attempt), (error or "")[:500], batch_id, owner),
                )
                row = conn.execute("SELECT attempts FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            return -1 if row is None else int(row[0])
        except SpoolError as exc:
            log.warning("%s; its lease runs out anyway", exc)
            return -1

    def release_all(self, owner: str) -> None:
        """On a clean shutdown: let other processes take our batches at once."""
        try:
            with self._transaction("release batches") as conn:
                conn.execute("UPDATE batches SET owner = NULL, lease_until = 0 WHERE owner = ?", (owner,))
        except SpoolError as exc:
            log.warning("%s; their leases run out anyway", exc)

    # -- dead letters ------------------------------------------------------------------

    def dead_letter(self, batch_id: str, error: str, seqs: list[int] | None = None) -> str | None:
        """Set a batch (or only its records ``seqs``) aside: kept, never retried by itself.

        Returns the dead letter's batch id (None when there was nothing to set aside). The
        rest of a partly set-aside batch stays open under its own id and goes on.
        """
        with self._transaction(f"set batch {batch_id} aside") as conn:
            row = conn.execute("SELECT kind, grp, attempts FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                return None
            kind, grp, attempts = row
            if seqs is None:
                n = conn.execute("SELECT COUNT(*) FROM records WHERE batch_id = ?", (batch_id,)).fetchone()[0]
                conn.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
                dead_id = batch_id
            else:
                marks = ",".join("?" * len(seqs))
                rids = [r[0] for r in conn.execute(
                    f"SELECT request_id FROM records WHERE batch_id = ? AND seq IN ({marks}) ORDER BY seq",
                    (batch_id, *seqs))]
                if not rids:
                    return None
                dead_id = self._unused_id(conn, kind, grp, ["dead-letter", *rids])
                conn.execute(f"UPDATE records SET batch_id = ? WHERE batch_id = ? AND seq IN ({marks})",
                             (dead_id, batch_id, *seqs))
                n = len(rids)
                conn.execute("UPDATE batches SET n = n - ? WHERE batch_id = ?", (n, batch_id))
                conn.execute("DELETE FROM batches WHERE batch_id = ? AND NOT EXISTS "
                             "(SELECT 1 FROM records WHERE batch_id = ?)", (batch_id, batch_id))
            conn.execute(
                "INSERT INTO dead_letters (batch_id, kind, grp, n, attempts, last_error, dead_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (dead_id, kind, grp, n, attempts, error[:500], time.time()))
        log.error("set %d %s record(s) aside as dead letter %s: %s", n, kind, dead_id, error)
        return dead_id

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._read("SELECT batch_id, kind, grp, n, attempts, last_error, dead_at FROM dead_letters "
                          "ORDER BY dead_at")
        return [DeadLetter(*row) for row in rows]

    def retry_dead(self, batch_ids: list[str] | None = None) -> int:
        """Put dead letters (all, or those named) back in line; returns how many records.

        A retried batch is a new try from scratch: attempts reset, and a new write
        sequence number when it is written (its old one is closed for readers).
        """
        with self._transaction("retry dead letters") as conn:
            wanted = conn.execute("SELECT batch_id, kind, grp, n FROM dead_letters").fetchall()
            if batch_ids is not None:
                wanted = [row for row in wanted if row[0] in set(batch_ids)]
            now = time.time()
            for batch_id, kind, grp, n in wanted:
                conn.execute("INSERT INTO batches (batch_id, kind, grp, created_at, n, owner, lease_until) "
                             "VALUES (?, ?, ?, ?, ?, NULL, 0)", (batch_id, kind, grp, now, n))
                conn.execute("DELETE FROM dead_letters WHERE batch_id = ?", (batch_id,))
            return sum(int(row[3]) for row in wanted)

    # -- upkeep ------------------------------------------------------------------------

    def checkpoint(self) -> tuple[int, int, int]:
        """Fold the WAL into the database file (off the prediction path).

        Returns SQLite's ``(busy, wal_frames, checkpointed_frames)``; raises ``SpoolError``
        when it fails, since with automatic checkpoints off a silent failure lets the WAL
        grow without bound.
        """
        try:
            with self._connection() as conn:
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot checkpoint the spool at {self.path}: {exc}") from exc
        return int(row[0]), int(row[1]), int(row[2])

    def wal_bytes(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    # -- readers -----------------------------------------------------------------------

    def max_seq(self) -> int:
        return int(self._read("SELECT MAX(seq) FROM records")[0][0] or 0)

    def records_left(self) -> int:
        """How many records have ever left this spool (written to MLflow): the highest number
        ever given minus the records still held. It grows exactly when a batch completes, so
        a reader can tell that rows it showed from the spool now live in MLflow only."""
        row = self._read("SELECT (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'records'), "
                         "(SELECT COUNT(*) FROM records)")[0]
        return int(row[0]) - int(row[1])

    def pending_count(self, up_to_seq: int | None = None) -> int:
        """Live records not yet in MLflow (dead letters wait for ``retry_dead`` and are not counted)."""
        if up_to_seq is None:
            return int(self._read(f"SELECT COUNT(*) FROM records WHERE {_LIVE}")[0][0])
        return int(self._read(f"SELECT COUNT(*) FROM records WHERE seq <= ? AND {_LIVE}", (up_to_seq,))[0][0])

    def stats(self) -> SpoolStats:
        try:
            with self._connection() as conn:
                pending, claimed, oldest = conn.execute(
                    f"SELECT COUNT(*), COUNT(batch_id), MIN(spooled_at) FROM records WHERE {_LIVE}"
                ).fetchone()
                retrying = conn.execute("SELECT COUNT(*) FROM batches WHERE attempts > 0").fetchone()[0]
                dead_batches, dead_records = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM dead_letters").fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read the spool at {self.path}: {exc}") from exc
        return SpoolStats(int(pending), int(claimed), oldest, int(retrying), int(dead_batches),
                          int(dead_records), self.wal_bytes())

    def pending_rows(self, kind: str) -> list[tuple[str | None, bytes]]:
        """``(batch_id, payload)`` of every live record not yet completed, oldest first."""
        return self._read(f"SELECT batch_id, payload FROM records WHERE kind = ? AND {_LIVE} ORDER BY seq", (kind,))

    def pending_payloads(self, kind: str) -> list[bytes]:
        """Payloads of every live record not yet completed, oldest first (for the reader)."""
        rows = self._read(f"SELECT payload FROM records WHERE kind = ? AND {_LIVE} ORDER BY seq", (kind,))
        return [payload for (payload,) in rows]


def open_existing(directory: Path | str) -> Spool | None:
    """The spool in ``directory`` if one exists there; never creates one (readers)."""
    if not (Path(directory) / SPOOL_FILE).exists():
        return None
    return Spool(directory)
