"""The serving backbone: the converted EfficientNet-Lite0 run by LiteRT (``ai-edge-litert``).

Why: on these 2-core machines the same network runs about 4x faster through LiteRT's
XNNPACK kernels than through a ``tf.function``, the runtime imports in ~0.1 s against ~5 s
for TensorFlow, and a process serving with it needs no TensorFlow at all (a CLI
``predict`` fits in a fraction of the memory). Outputs match Keras to ~1e-5 (checked by
``nutrilearn setup`` and tests/test_litert.py).

One interpreter per backbone, used under a lock (an interpreter is not thread-safe; the
app's sessions share one backbone). ``invoke`` releases the GIL, so decoding the next
chunk in another thread overlaps the forward pass.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from nutrilearn.vision.images import INPUT_SIZE
from nutrilearn.vision.model_files import read_checked_tflite

# "per_photo": the interpreter keeps its fixed (1, 224, 224, 3) input and a batch runs
# photo by photo; "resize": the input is resized to the batch. bench/bench_predict.py
# measures both (bench/RESULTS.md); per photo was as fast or faster, and never reallocates.
BATCH_MODES = ("per_photo", "resize")
DEFAULT_BATCH_MODE = "per_photo"
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


def cpu_threads() -> int:
    """Cores this process may run on (a container's CPU set, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LiteRTBackbone:
    """``forward(x) -> (logits, pooled)``, the same contract as ``KerasBackbone``."""

    kind = "litert"

    def __init__(self, model: bytes, threads: int | None = None, batch_mode: str = DEFAULT_BATCH_MODE):
        from ai_edge_litert.interpreter import Interpreter  # ~0.1 s; XNNPACK is its default CPU delegate

        if batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
        self._model = model  # the interpreter reads from this buffer: keep it alive
        self.threads = threads or cpu_threads()
        self.batch_mode = batch_mode
        with _quiet_native_stderr():
            self._interpreter = Interpreter(model_content=model, num_threads=self.threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {int(d["shape"][-1]): d["index"] for d in self._interpreter.get_output_details()}
        if set(outputs) != {LOGITS_DIM, POOLED_DIM}:
            raise ValueError(f"not the NutriLearn backbone: outputs of sizes {sorted(outputs)}")
        self._logits, self._pooled = outputs[LOGITS_DIM], outputs[POOLED_DIM]
        self._batch = 1
        self._lock = threading.Lock()

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
        with self._lock:
            if self.batch_mode == "resize":
                return self._run(x, n)
            logits = np.empty((n, LOGITS_DIM), np.float32)
            pooled = np.empty((n, POOLED_DIM), np.float32)
            for i in range(n):
                logits[i : i + 1], pooled[i : i + 1] = self._run(x[i : i + 1], 1)
            return logits, pooled

    def _run(self, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        it = self._interpreter
        if n != self._batch:
            it.resize_tensor_input(self._input, [n, INPUT_SIZE, INPUT_SIZE, 3])
            it.allocate_tensors()
            self._batch = n
        it.set_tensor(self._input, x)
        it.invoke()
        return it.get_tensor(self._logits), it.get_tensor(self._pooled)  # copies: safe after the lock
