"""The weights reader: verified, allow-listed, and complete."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from nutrilearn.vision import weights as W


@pytest.fixture(scope="module")
def raw() -> bytes:
    return W.packaged_weights_path().read_bytes()


def test_reads_every_tensor_of_the_packaged_file():
    state = W.load_weights()
    assert len(state) == 296
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(counters) == 49
    assert sum(v.size for k, v in state.items() if k not in counters) == 4_694_024
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].dtype == np.float32


def test_altered_file_is_refused_by_its_hash(tmp_path, raw):
    bad = bytearray(raw)
    bad[-10] ^= 0xFF
    path = tmp_path / "w.pth"
    path.write_bytes(bytes(bad))
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load_weights(path)


def _legacy_header() -> bytes:
    return b"".join(pickle.dumps(x, protocol=2) for x in (W._LEGACY_MAGIC, W._LEGACY_PROTOCOL, {"little_endian": True}))


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/nutrilearn-pwned",))


def test_pickle_that_tries_to_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    payload = _legacy_header() + pickle.dumps({"x": Evil()}, protocol=2)
    with pytest.raises(W.UnsafeWeightsError, match="system"):
        W.read_legacy_state_dict(payload)
    assert not marker.exists()


def test_eval_in_the_header_is_refused():
    payload = pickle.dumps(_RunsCode(), protocol=2)
    with pytest.raises(W.UnsafeWeightsError):
        W.read_legacy_state_dict(payload)


def test_truncated_storage_is_an_error(raw):
    with pytest.raises(W.WeightsError, match="truncated|wrong size"):
        W.read_legacy_state_dict(raw[:-1000])


def test_extra_bytes_are_an_error(raw):
    with pytest.raises(W.WeightsError, match="unexpected bytes"):
        W.read_legacy_state_dict(raw + struct.pack("<q", 0))
