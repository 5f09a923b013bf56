"""Compact embeddings: a fixed random projection of the 1280-d pooled features.

128 float16 values = 256 bytes a record, small enough to log with every prediction and
enough to test embedding drift (random projections keep pairwise distances; Johnson-
Lindenstrauss). The seed is part of the format: change it and old embeddings stop
being comparable, so ``EMBEDDING_FORMAT`` names it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import numpy as np

COMPACT_DIM = 128
_SEED = 20261127
EMBEDDING_FORMAT = f"rp{COMPACT_DIM}-f16-seed{_SEED}"


@lru_cache(maxsize=1)
def _projection(input_dim: int = 1280) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    return (rng.standard_normal((input_dim, COMPACT_DIM)) / np.sqrt(COMPACT_DIM)).astype(np.float32)


def compact(pooled: np.ndarray) -> np.ndarray:
    """(N, 1280) pooled features -> (N, 128) float16 projections."""
    pooled = np.atleast_2d(np.asarray(pooled, dtype=np.float32))
    return (pooled @ _projection(pooled.shape[1])).astype(np.float16)


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def from_bytes(blobs: Iterable[bytes | None]) -> np.ndarray:
    """Stack stored embeddings into (N, 128) float32; missing ones are dropped."""
    rows = [np.frombuffer(b, dtype="<f2") for b in blobs if b]
    if not rows:
        return np.empty((0, COMPACT_DIM), dtype=np.float32)
    return np.vstack(rows).astype(np.float32)
