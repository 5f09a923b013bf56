"""The LiteRT serving runtime: the same numbers as Keras, checked files, no TensorFlow when serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nutrilearn.vision.images import crop_and_resize, decode_image

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 3  # 30 real photos: every food10 class


@pytest.fixture(scope="module")
def litert_classifier(models_dir):
    from nutrilearn.vision.classifier import FoodClassifier

    return FoodClassifier.load(models_dir, runtime="litert")


@pytest.fixture(scope="module")
def food10_photos(food10) -> list[Path]:
    return [p for c in sorted((food10 / "test").iterdir()) for p in sorted(c.glob("*.jpg"))[:PER_CLASS]]


def _crops(paths: list[Path]) -> np.ndarray:
    return np.stack([crop_and_resize(decode_image(p.read_bytes(), 10**8, 10**8).image) for p in paths])


def test_litert_matches_the_reference_logits(litert_classifier, golden):
    assert litert_classifier.runtime == "litert"
    logits, pooled = litert_classifier.backbone.forward(golden["inputs_nhwc"])
    assert np.abs(logits - golden["logits"]).max() < 1e-4
    assert np.abs(pooled - golden["pooled_features"]).max() < 1e-4
    assert logits[2].argmax() == 965  # burrito


@pytest.mark.food10
def test_both_runtimes_give_the_same_features_heads_and_embeddings(classifier, litert_classifier, food10_photos):
    from nutrilearn.monitoring.drift_tests import mmd_permutation
    from nutrilearn.vision.heads import LinearHead

    pixels = _crops(food10_photos)
    keras, lite = classifier.features(pixels), litert_classifier.features(pixels)
    assert np.abs(keras.logits - lite.logits).max() < 1e-4
    assert np.abs(keras.pooled - lite.pooled).max() < 1e-4
    # Version 1 (ImageNet's food head, with the not-food rule) says the same thing.
    for k, l in zip(classifier.classify(keras), litert_classifier.classify(lite)):
        assert (k.label, k.is_food, [x for x, _ in k.top5]) == (l.label, l.is_food, [x for x, _ in l.top5])
        assert abs(k.confidence - l.confidence) < 1e-5
    # A trained version (a linear head on the pooled features) too.
    rng = np.random.default_rng(0)
    head = LinearHead(tuple(f"food{i}" for i in range(10)), rng.normal(0, 0.05, (1280, 10)), np.zeros(10))
    pk, pl = head.probabilities(keras.logits, keras.pooled), head.probabilities(lite.logits, lite.pooled)
    assert np.abs(pk - pl).max() < 1e-5 and (pk.argmax(1) == pl.argmax(1)).all()
    # Compact embeddings (what embedding drift reads): equal to float16 rounding, and no drift between them.
    ek, el = (classifier.compact_embeddings(keras).astype(np.float32),
              litert_classifier.compact_embeddings(lite).astype(np.float32))
    assert np.abs(ek - el).max() <= 2e-3
    assert mmd_permutation(ek, el, permutations=100).p_value > 0.5


@pytest.mark.food10
def test_feature_cache_is_the_same_from_either_runtime(classifier, litert_classifier, food10, tmp_path):
    """Training reads cached features; serving (LiteRT) and training (Keras) may fill the cache."""
    from nutrilearn.config import Settings
    from nutrilearn.registry.features import compute_features, scan

    data = tmp_path / "data"
    for c in ("baklava", "bibimbap"):
        (data / c).mkdir(parents=True)
        for p in sorted((food10 / "test" / c).glob("*.jpg"))[:4]:
            (data / c / p.name).symlink_to(p)
    got = {}
    for name, clf in (("keras", classifier), ("litert", litert_classifier)):
        settings = Settings(models_dir=tmp_path / f"models-{name}")  # its own, empty cache
        got[name] = compute_features(scan([data]), clf, settings, flips=True)
    for field in ("pooled", "logits", "pooled_flip"):
        assert np.abs(getattr(got["keras"], field) - getattr(got["litert"], field)).max() < 1e-4


@pytest.mark.food10
def test_both_runtimes_write_the_same_records(classifier, litert_classifier, food10_photos):
    """Everything drift and monitoring read from a record: label, confidence, top-5, embedding, image stats."""
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
    from nutrilearn.vision.embedding import from_bytes

    photos = [Photo(p.name, p.read_bytes()) for p in food10_photos]
    settings = Settings()
    runs = [Analyzer(clf, ModelInfo(), settings).analyze(photos, user="t", batch_size=8)
            for clf in (classifier, litert_classifier)]
    for k, l in zip(*runs):
        assert k.ok and l.ok
        assert (k.label, k.is_food, k.top5_labels) == (l.label, l.is_food, l.top5_labels)
        assert np.allclose(k.top5_probs, l.top5_probs, atol=1e-5)
        assert (k.brightness, k.contrast, k.saturation, k.sharpness, k.aspect) == (
            l.brightness, l.contrast, l.saturation, l.sharpness, l.aspect)
        assert np.abs(from_bytes([k.embedding]) - from_bytes([l.embedding])).max() <= 2e-3


@pytest.mark.food10
def test_batch_modes_and_threads_agree(models_dir, food10_photos):
    from nutrilearn.vision.litert import LiteRTBackbone
    from nutrilearn.vision.model_files import read_checked_tflite

    x = (_crops(food10_photos[:6]).astype(np.float32) - 127.0) / 128.0
    model = read_checked_tflite(models_dir)
    per_photo = LiteRTBackbone(model, threads=2, batch_mode="per_photo")
    resized = LiteRTBackbone(model, threads=1, batch_mode="resize")
    want = per_photo.forward(x)
    for got in (resized.forward(x), resized.forward(x[:1])):
        n = len(got[0])
        assert np.abs(got[0] - want[0][:n]).max() < 1e-4 and np.abs(got[1] - want[1][:n]).max() < 1e-4
    assert [a.shape for a in per_photo.forward(x[:0])] == [(0, 1000), (0, 1280)]
    # One interpreter shared by the app's sessions: concurrent calls each get their own photos' outputs.
    results: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        for _ in range(3):
            results[i] = per_photo.forward(x[i : i + 1])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(x))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(x)):
        assert np.abs(results[i][0] - want[0][i]).max() < 1e-4
    with pytest.raises(ValueError, match="expected"):
        per_photo.forward(np.zeros((1, 100, 100, 3), np.float32))


@pytest.mark.food10
@pytest.mark.parametrize("mode", ["workers", "per_photo", "resize"])
def test_uint8_crops_give_the_same_numbers_as_normalised_input(models_dir, food10_photos, mode):
    """Serving hands uint8 crops to the backbone, normalised photo by photo in each
    interpreter's buffer: bit for bit what ``forward(normalise(crops))`` gives, in order,
    from an array or a list of crops, one photo or a batch."""
    from nutrilearn.vision.images import normalise
    from nutrilearn.vision.litert import LiteRTBackbone
    from nutrilearn.vision.model_files import read_checked_tflite

    crops = _crops(food10_photos[:5])
    backbone = LiteRTBackbone(read_checked_tflite(models_dir), threads=2, batch_mode=mode)
    for batch in (crops, crops[:1], crops[::-1]):
        want = backbone.forward(normalise(batch))
        for pixels in (batch, list(batch)):
            got = backbone.forward_pixels(pixels)
            assert all(np.array_equal(g, w) for g, w in zip(got, want)), mode
    assert not np.array_equal(backbone.forward_pixels(crops[:1])[0], backbone.forward_pixels(crops[1:2])[0])
    assert [a.shape for a in backbone.forward_pixels([])] == [(0, 1000), (0, 1280)]
    with pytest.raises(ValueError, match="expected"):
        backbone.forward_pixels([np.zeros((100, 100, 3), np.uint8)])


@pytest.mark.food10
def test_batch_workers_give_each_photo_its_own_outputs(models_dir, food10_photos):
    """Serving's batches run on one-thread interpreters in parallel: same numbers, right order,
    also with batches and single photos arriving from several threads at once."""
    from nutrilearn.vision.litert import DEFAULT_BATCH_MODE, LiteRTBackbone
    from nutrilearn.vision.model_files import read_checked_tflite

    assert DEFAULT_BATCH_MODE == "workers"
    x = (_crops(food10_photos[:9]).astype(np.float32) - 127.0) / 128.0
    model = read_checked_tflite(models_dir)
    want = LiteRTBackbone(model, threads=2, batch_mode="per_photo").forward(x)
    workers = LiteRTBackbone(model, threads=2, batch_mode="workers")
    got = workers.forward(x)
    assert np.abs(got[0] - want[0]).max() < 1e-5 and np.abs(got[1] - want[1]).max() < 1e-5
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def run(i: int) -> None:
        part = x[i:] if i % 2 else x[i : i + 1]  # batches and single photos at once
        for _ in range(2):
            results[i] = workers.forward(part)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (logits, pooled) in results.items():
        n = len(logits)
        assert np.abs(logits - want[0][i : i + n]).max() < 1e-5
        assert np.abs(pooled - want[1][i : i + n]).max() < 1e-5


def test_a_tflite_file_that_is_not_the_checked_one_is_refused(models_dir, tmp_path):
    from nutrilearn.vision.litert import LiteRTBackbone
    from nutrilearn.vision.model_files import MANIFEST_FILENAME, TFLITE_FILENAME, ModelFileError

    copy = tmp_path / "models"
    copy.mkdir()
    for name in (TFLITE_FILENAME, MANIFEST_FILENAME):
        (copy / name).write_bytes((models_dir / name).read_bytes())
    assert LiteRTBackbone.load(copy).kind == "litert"
    data = bytearray((copy / TFLITE_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one weight byte changed
    (copy / TFLITE_FILENAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 differs"):
        LiteRTBackbone.load(copy)
    (copy / MANIFEST_FILENAME).unlink()
    with pytest.raises(ModelFileError, match="run `nutrilearn setup`"):
        LiteRTBackbone.load(copy)


@pytest.mark.slow
def test_conversion_is_checked_recorded_and_done_once(models_dir, tmp_path):
    from nutrilearn.vision.conversion import ensure_tflite, is_current
    from nutrilearn.vision.model_files import (KERAS_FILENAME, ModelFileError, read_manifest, sha256_file,
                                               tflite_path)

    built = tmp_path / "models"
    built.mkdir()
    (built / KERAS_FILENAME).symlink_to(models_dir / KERAS_FILENAME)
    with pytest.raises(ModelFileError, match="differs from Keras"):
        ensure_tflite(built, tolerance=1e-9)  # no conversion is that exact: refused, nothing installed
    assert not tflite_path(built).exists() and read_manifest(built) is None
    manifest = ensure_tflite(built)
    assert manifest.keras_sha256 == sha256_file(built / KERAS_FILENAME)
    assert manifest.tflite_sha256 == sha256_file(tflite_path(built))
    assert max(manifest.max_abs_diff_logits, manifest.max_abs_diff_pooled) <= 1e-4
    assert manifest.check_inputs.startswith("golden (3)") or "seeded" in manifest.check_inputs
    assert is_current(built)
    mtime = tflite_path(built).stat().st_mtime_ns
    assert ensure_tflite(built) == manifest and tflite_path(built).stat().st_mtime_ns == mtime


SERVE_ONE = """
import json, sys
from nutrilearn.config import Settings
from nutrilearn.pipeline import Photo
from nutrilearn.serving import build_analyzer, load_classifier
settings = Settings.from_env()
analyzer = build_analyzer(settings, classifier=load_classifier(settings))
rec = analyzer.analyze([Photo("p.jpg", open(sys.argv[1], "rb").read())], user="t")[0]
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)
print(json.dumps({"label": rec.label, "version": rec.model_version, "heavy": heavy}))
"""


@pytest.mark.food10
@pytest.mark.parametrize("runtime", ["litert", "keras"])
def test_serving_imports_tensorflow_only_on_the_keras_runtime(runtime, home, food10, models_dir):
    photo = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[0]
    env = {**os.environ, "NUTRILEARN_RUNTIME": runtime}
    done = subprocess.run([sys.executable, "-c", SERVE_ONE, str(photo)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["label"] == "burrito" and out["version"] == "1"
    assert out["heavy"] == ([] if runtime == "litert" else ["keras", "tensorflow"])


def test_an_unknown_runtime_is_refused(monkeypatch):
    from nutrilearn.config import Settings

    monkeypatch.setenv("NUTRILEARN_RUNTIME", "onnx")
    with pytest.raises(ValueError, match="NUTRILEARN_RUNTIME must be one of litert, keras"):
        Settings.from_env()


@pytest.mark.food10
def test_predictions_run_on_one_blas_thread_with_the_same_numbers(litert_classifier, food10_photos):
    """While photos are predicted BLAS runs on one thread (no helper spinning against the
    LiteRT workers), counted across nested and concurrent calls; the limits come back after,
    and the embedding, a trained head and the image statistics are the same bit for bit."""
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
    from nutrilearn.vision import embedding
    from nutrilearn.vision.blas import blas_threads, one_blas_thread
    from nutrilearn.vision.heads import LinearHead
    from nutrilearn.vision.images import image_stats

    default = blas_threads()
    assert default
    if default == [1] * len(default):
        pytest.skip("BLAS already runs on one thread here: nothing to see limited")
    seen: list[list[int]] = []
    photos = [Photo(p.name, p.read_bytes()) for p in food10_photos[:8]]
    records = Analyzer(litert_classifier, ModelInfo(), Settings()).analyze(
        photos, user="t", batch_size=4, progress=lambda done, total: seen.append(blas_threads()))
    assert all(r.ok for r in records) and seen == [[1] * len(default)] * 2
    assert blas_threads() == default

    crops = _crops(food10_photos[:12])
    feats = litert_classifier.features(crops)
    rng = np.random.default_rng(0)
    head = LinearHead(tuple(f"food{i}" for i in range(101)), rng.standard_normal((1280, 101)), rng.standard_normal(101))
    want = (embedding.compact(feats.pooled), head.probabilities(feats.logits, feats.pooled),
            [image_stats(c, 1.0) for c in crops])
    with one_blas_thread():
        with one_blas_thread():
            assert blas_threads() == [1] * len(default)
        assert blas_threads() == [1] * len(default)  # the outer block still holds
        got = (embedding.compact(feats.pooled), head.probabilities(feats.logits, feats.pooled),
               [image_stats(c, 1.0) for c in crops])
    assert blas_threads() == default
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]
