"""Hostile input: fuzzed images, names built to break queries, paths built to escape.

The long fuzzing run is `bench/fuzz_images.py` (minutes); here a few hundred examples.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from nutrilearn.vision.images import DecodedImage, ImageError, decode_image
from tests.tracking_fixtures import loggers, mlflow_db, make_record, tracking  # noqa: F401 (fixtures)


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("WEBP", "RGB"), ("BMP", "RGB"),
                      ("TIFF", "CMYK"), ("PNG", "I;16")):
        img = Image.fromarray(arr).convert("RGB")
        img = img.convert(mode) if mode != "I;16" else Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
        buf = io.BytesIO()
        img.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "zero":
            data[pos : pos + 16] = bytes(min(16, len(data) - pos))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_images(), st.binary(max_size=2048)))
def test_fuzzed_bytes_decode_or_fail_with_a_named_error(data):
    try:
        decoded = decode_image(data, max_bytes=1_000_000, max_pixels=4_000_000)
    except ImageError as exc:
        assert exc.kind and str(exc)
        return
    assert isinstance(decoded, DecodedImage) and decoded.image.mode == "RGB"
    assert decoded.image.size == (decoded.width, decoded.height)


def test_fuzzed_batch_through_the_model_is_all_records(classifier):

    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo

    rng = np.random.default_rng(7)
    photos = []
    for i in range(40):
        data = bytearray(SEEDS[i % len(SEEDS)])
        for _ in range(int(rng.integers(0, 4))):
            data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
        photos.append(Photo(f"f{i}.bin", bytes(data)))
    records = Analyzer(classifier, ModelInfo(), Settings.from_env()).analyze(photos, user="fuzz", batch_size=8)
    assert len(records) == 40
    assert {r.status for r in records} <= {"ok", "error"}
    assert all((r.error_type is None) == (r.status == "ok") for r in records)


HOSTILE_NAMES = [
    "o'brien", "x' OR '1'='1", '"; DROP TABLE meals; --', "100%_done", "a/b\\c", "../../etc/passwd",
    "名前 🍣", "tags.user = 'x'", "`backtick`",
]


def test_hostile_user_names_are_data_in_mlflow(tracking, loggers):
    from nutrilearn.tracking.reader import PredictionReader

    logger = loggers(tracking, batch_max_records=5)
    sent = {name: [make_record(i, user=name) for i in range(3)] for name in HOSTILE_NAMES}
    for records in sent.values():
        for rec in records:
            logger.submit(rec)
    assert logger.flush(60)
    reader = PredictionReader(tracking)
    everything = reader.predictions()
    assert len(everything) == 3 * len(HOSTILE_NAMES) and everything["request_id"].is_unique
    for name, records in sent.items():
        got = reader.predictions(user=name)
        assert sorted(got["request_id"]) == sorted(r.request_id for r in records), name


def test_hostile_user_names_are_data_in_the_meal_log(tmp_path):
    from nutrilearn.meals import MealEntry, MealStore

    store = MealStore(f"sqlite:///{tmp_path / 'meals.db'}")
    names = [n for n in HOSTILE_NAMES if "/" not in n and "\\" not in n]
    for name in names:
        store.ensure_user(name)
        store.log_meal(MealEntry(user=name, label="pizza", meal_type="lunch"))
    assert sorted(store.list_users()) == sorted(names)
    for name in names:
        assert len(store.meals(name)) == 1


@pytest.mark.parametrize("label", ["../../etc", "pizza/../../x", "/abs", "not_food", "", "Pizza "])
def test_feedback_photo_labels_cannot_escape_their_folder(tmp_path, monkeypatch, label):
    from nutrilearn.config import Settings
    from nutrilearn.registry.feedback_store import keep_photo

    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.setenv("NUTRILEARN_KEEP_FEEDBACK_PHOTOS", "1")
    with pytest.raises(ValueError):
        keep_photo(Settings.from_env(), "0" * 32, label, SEEDS[0])
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_streamlit_upload_limit_matches_the_package_limit():
    import tomllib

    from nutrilearn.config import Settings
    from tests.conftest import ROOT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1024 * 1024 >= Settings().max_upload_bytes
    assert config["server"]["maxUploadSize"] <= 25  # MB: the server refuses anything bigger


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "data" / "fuzz").glob("*.bin")), ids=lambda p: p.name)
def test_fuzz_findings_stay_fixed(path):
    """Inputs that once escaped as IndexError/struct.error from PIL's GIF frame walk."""
    with pytest.raises(ImageError):
        decode_image(path.read_bytes(), max_bytes=5_000_000, max_pixels=20_000_000)
