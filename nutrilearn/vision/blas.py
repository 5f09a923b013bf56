"""One BLAS thread while photos are predicted.

The prediction path's matrix products are small: the compact embedding ((32, 1280) @
(1280, 128)), a trained head ((32, 1280) @ (1280, classes)) and the luma of each crop
((50176, 3) @ (3,)). OpenBLAS still splits them over every core, and its helper threads
then spin waiting for more work, taking a core from the LiteRT workers and the decode
thread: on food10 photos a chunk's embedding cost 6-36 ms of process CPU against 0.3 ms on
one thread, the luma 0.17 ms a photo more (bench/RESULTS.md). One thread gives the same
numbers bit for bit (OpenBLAS splits the output, not the sums; tests/test_litert.py).

The limit is the process's (BLAS has no per-thread setting): it holds while any
``Analyzer.analyze`` runs, counted across concurrent calls, and the previous limits come
back when the last one ends. Other work in the process meanwhile (a drift page in the same
app) also gets one BLAS thread, which on these 2-core machines with both cores already
predicting costs it nothing it could have had.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

_lock = threading.Lock()
_users = 0
_limiter: Any = None
_controller: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS libraries on one thread inside the block (nested and concurrent blocks count)."""
    global _users, _limiter, _controller
    with _lock:
        if _users == 0:
            try:
                if _controller is None:
                    from threadpoolctl import ThreadpoolController  # ~2 ms, once a process

                    _controller = ThreadpoolController()
                _limiter = _controller.limit(limits=1, user_api="blas")
            except Exception:  # no threadpoolctl, or a library it cannot drive: run as before
                _limiter = None
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def cpu_threads() -> int:
    """Cores this process may run on (a container's CPU set, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def blas_threads() -> list[int]:
    """The BLAS libraries' current thread counts (for tests and benches)."""
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
