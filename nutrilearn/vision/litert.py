"""The serving backbone: the converted EfficientNet-Lite0 run by LiteRT (``ai-edge-litert``).

Why: on these 2-core machines the same network runs about 4x faster through LiteRT's
XNNPACK kernels than through a ``tf.function``, the runtime imports in ~0.1 s against ~5 s
for TensorFlow, and a process serving with it needs no TensorFlow at all (a CLI
``predict`` fits in a fraction of the memory). Outputs match Keras to ~1e-5 (checked by
``nutrilearn setup`` and tests/test_litert.py).

One interpreter per backbone with all the process's cores, used under a lock (an
interpreter is not thread-safe; the app's sessions share one backbone): a single photo
gets its lowest latency there. A batch runs on one-thread interpreters instead, one per
core, each taking the next photo ("workers", built at the first batch): a multi-threaded
interpreter waits at every layer for its slowest thread, so as soon as anything else
wants a core (the decode thread, another process) a 2-thread pass costs as much as a
1-thread one, while independent 1-thread passes just share the cores. ``invoke``
releases the GIL, so the workers run in parallel and decoding the next chunk overlaps them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from nutrilearn.vision.blas import cpu_threads
from nutrilearn.vision.images import INPUT_SIZE, normalise, normalise_into
from nutrilearn.vision.model_files import read_checked_tflite

# "per_photo": the interpreter keeps its fixed (1, 224, 224, 3) input and a batch runs
# photo by photo; "resize": the input is resized to the batch; "workers": photo by photo
# on ``threads`` one-thread interpreters in parallel (a single photo still runs on the
# multi-threaded one). bench/bench_predict.py measures all three (bench/RESULTS.md).
BATCH_MODES = ("per_photo", "resize", "workers")
DEFAULT_BATCH_MODE = "workers"
LOGITS_DIM, POOLED_DIM = 1000, 1280
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide the runtime's one-line "INFO: Created TensorFlow Lite XNNPACK delegate" (printed
    by C++ to fd 2 on every start, whatever the log level) from CLI users. Construction
    errors still arrive as Python exceptions with their message."""
    with _STDERR_LOCK:  # fd 2 is the process's: one swap at a time
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _Runner:
    """One interpreter on the fixed (1, 224, 224, 3) input, and its tensor indices."""

    def __init__(self, model: bytes, threads: int):
        from ai_edge_litert.interpreter import Interpreter  # ~0.1 s; XNNPACK is its default CPU delegate

        with _quiet_native_stderr():
            self.interpreter = Interpreter(model_content=model, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {int(d["shape"][-1]): d["index"] for d in self.interpreter.get_output_details()}
        if set(outputs) != {LOGITS_DIM, POOLED_DIM}:
            raise ValueError(f"not the NutriLearn backbone: outputs of sizes {sorted(outputs)}")
        self.logits, self.pooled = outputs[LOGITS_DIM], outputs[POOLED_DIM]
        self.buffer = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)  # this runner's normalised photo

    def run_each(self, photos, todo: Iterator[int], logits: np.ndarray, pooled: np.ndarray) -> None:
        """Forward the photos ``todo`` hands out (shared between runners) into the outputs.

        ``photos[i]`` is a normalised float32 (224, 224, 3) photo, or uint8 pixels that are
        normalised here, into this runner's buffer (the same values as ``normalise``)."""
        it = self.interpreter
        for i in todo:
            photo = photos[i]
            if photo.dtype == np.uint8:
                it.set_tensor(self.input, normalise_into(photo, self.buffer[0])[None])
            else:
                it.set_tensor(self.input, photo[None])
            it.invoke()
            logits[i] = it.get_tensor(self.logits)[0]
            pooled[i] = it.get_tensor(self.pooled)[0]


class LiteRTBackbone:
    """``forward(x) -> (logits, pooled)``, the same contract as ``KerasBackbone``."""

    kind = "litert"

    def __init__(self, model: bytes, threads: int | None = None, batch_mode: str = DEFAULT_BATCH_MODE):
        if batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
        self._model = model  # the interpreters read from this buffer: keep it alive
        self.threads = threads or cpu_threads()
        self.batch_mode = batch_mode
        self._main = _Runner(model, self.threads)
        self._batch = 1
        self._lock = threading.Lock()
        # Batch workers: built at the first batch (a one-photo process never pays for them).
        self._workers: list[_Runner] = []
        self._pool: ThreadPoolExecutor | None = None
        self._workers_lock = threading.Lock()

    @classmethod
    def load(cls, models_dir: Path, threads: int | None = None, batch_mode: str = DEFAULT_BATCH_MODE) -> "LiteRTBackbone":
        """The ``.tflite`` setup converted and checked (its sha256 must match the manifest)."""
        return cls(read_checked_tflite(models_dir), threads, batch_mode)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised float32 (N, 224, 224, 3) -> ImageNet logits (N, 1000), pooled (N, 1280)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) images, got {x.shape}")
        n = len(x)
        if n == 0:
            return np.empty((0, LOGITS_DIM), np.float32), np.empty((0, POOLED_DIM), np.float32)
        if self.batch_mode == "resize":
            with self._lock:
                return self._run(x, n)
        return self._photo_by_photo(x)

    def forward_pixels(self, pixels) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops, (N, 224, 224, 3) or a sequence of (224, 224, 3) -> ``forward(normalise(pixels))``.

        The same numbers bit for bit, but each photo is normalised by the interpreter that
        runs it, into its own buffer: no stacked batch, no batch-sized float arrays.
        """
        photos = [np.asarray(p) for p in pixels]
        if any(p.shape != (INPUT_SIZE, INPUT_SIZE, 3) for p in photos):
            raise ValueError(f"expected ({INPUT_SIZE}, {INPUT_SIZE}, 3) crops, got {[p.shape for p in photos][:3]}")
        if not photos:
            return np.empty((0, LOGITS_DIM), np.float32), np.empty((0, POOLED_DIM), np.float32)
        if self.batch_mode == "resize" or any(p.dtype != np.uint8 for p in photos):
            return self.forward(normalise(np.stack(photos)))
        return self._photo_by_photo(photos)

    def _photo_by_photo(self, photos) -> tuple[np.ndarray, np.ndarray]:
        """A single photo on the multi-threaded interpreter; a batch on the workers ("workers")
        or photo by photo on it ("per_photo")."""
        n = len(photos)
        if self.batch_mode == "workers" and n > 1 and self.threads > 1:
            return self._forward_workers(photos)
        logits = np.empty((n, LOGITS_DIM), np.float32)
        pooled = np.empty((n, POOLED_DIM), np.float32)
        with self._lock:
            self._main.run_each(photos, iter(range(n)), logits, pooled)
        return logits, pooled

    def _forward_workers(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Photo by photo on the one-thread interpreters in parallel; this thread is one of them."""
        n = len(x)
        logits = np.empty((n, LOGITS_DIM), np.float32)
        pooled = np.empty((n, POOLED_DIM), np.float32)
        with self._workers_lock:  # one batch at a time on the workers
            if not self._workers:
                self._workers = [_Runner(self._model, 1) for _ in range(self.threads)]
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="litert")
            todo = iter(range(n))  # next() on a shared iterator hands each photo out once (GIL)
            helpers = [self._pool.submit(w.run_each, x, todo, logits, pooled) for w in self._workers[1:]]
            try:
                self._workers[0].run_each(x, todo, logits, pooled)
            finally:
                for h in helpers:
                    h.result()
        return logits, pooled

    def _run(self, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        main = self._main
        it = main.interpreter
        if n != self._batch:
            it.resize_tensor_input(main.input, [n, INPUT_SIZE, INPUT_SIZE, 3])
            it.allocate_tensors()
            self._batch = n
        it.set_tensor(main.input, x)
        it.invoke()
        return it.get_tensor(main.logits), it.get_tensor(main.pooled)  # copies: safe after the lock
