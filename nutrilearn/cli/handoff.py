"""A short-lived CLI's records reach MLflow after it exits: a detached flusher takes them.

``nutrilearn predict`` makes its records durable in the spool and exits without importing
MLflow (2-3 s it would otherwise spend, more than the whole prediction). Before exiting it
starts ``python -m nutrilearn.cli.handoff`` in its own session, which sends everything
pending in the spool to MLflow and ends. One hand-off runs per spool at a time: it holds
``<spool>/handoff.lock`` (inherited from the CLI that started it, so there is no moment
when nobody holds it), and after releasing it looks once more, so records spooled while
it was finishing are never left behind. A running app's flusher takes them too; the
spool's batch ids make two writers harmless.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

LOCK_FILE = "handoff.lock"
_ENV_FD = "NUTRILEARN_HANDOFF_LOCK_FD"
ROUNDS = 5
ROUND_TIMEOUT_S = 60.0


def lock_path(spool_dir: Path) -> Path:
    return Path(spool_dir) / LOCK_FILE


def _try_lock(path: Path) -> int | None:
    """An fd holding the hand-off lock, or None when a hand-off is already running."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def start(spool_dir: Path) -> bool:
    """Start a detached flusher for this spool unless one runs; True if one was started."""
    fd = _try_lock(lock_path(spool_dir))
    if fd is None:
        return False  # the running one looks again after releasing the lock
    try:
        subprocess.Popen([sys.executable, "-m", "nutrilearn.cli.handoff"], pass_fds=(fd,),
                         env={**os.environ, _ENV_FD: str(fd)}, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(fd)  # the child's copy keeps the lock
    return True


def _flush_rounds() -> None:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger

    logger = PredictionLogger(Settings.from_env(), start=True)
    try:
        for _ in range(ROUNDS):
            if logger.flush(ROUND_TIMEOUT_S) or logger.status().reachable is False:
                break  # done, or MLflow is down: the records wait in the spool for the next flush
    finally:
        logger.close(timeout=0.0)


def main() -> int:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.spool import open_existing

    settings = Settings.from_env()
    fd = int(os.environ.pop(_ENV_FD, "-1"))
    for _ in range(ROUNDS):
        if fd < 0:
            fd = _try_lock(lock_path(settings.spool_dir)) or -1
            if fd < 0:
                return 0  # another hand-off took over
        try:
            _flush_rounds()
        finally:
            os.close(fd)  # releases the lock
            fd = -1
        spool = open_existing(settings.spool_dir)
        pending = spool.pending_count() if spool is not None else 0
        if spool is not None:
            spool.close()
        if not pending:
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
