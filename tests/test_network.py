"""The Keras port reproduces the reference network's outputs."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from nutrilearn.vision.images import crop_and_resize, decode_image, normalise


def test_logits_and_embedding_match_the_reference(classifier, golden):
    assert classifier.runtime == "keras"  # the port itself, before any conversion
    logits, pooled = classifier.backbone.forward(golden["inputs_nhwc"])
    assert np.abs(logits - golden["logits"]).max() < 1e-4
    assert np.abs(pooled - golden["pooled_features"]).max() < 1e-4
    assert logits[2].argmax() == 965  # burrito


def test_preprocessing_matches_the_reference_bit_for_bit(golden, food10):
    photo = food10 / "test" / "breakfast_burrito" / "1000920.jpg"
    decoded = decode_image(photo.read_bytes(), 10**8, 10**8)
    assert np.array_equal(normalise(crop_and_resize(decoded.image)), golden["inputs_nhwc"][2])


def test_port_refuses_a_missing_or_unused_tensor():
    from nutrilearn.vision.network import build_network, port_weights
    from nutrilearn.vision.weights import WeightsError, load_weights

    state = load_weights()
    model = build_network()
    missing = OrderedDict((k, v) for k, v in state.items() if k != "_blocks.3._bn1.bias")
    with pytest.raises(WeightsError, match="no tensor _blocks.3._bn1.bias"):
        port_weights(model, missing)
    extra = OrderedDict(state)
    extra["_blocks.99._bn0.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError, match="not used"):
        port_weights(model, extra)


def test_model_file_is_cached_and_reused(models_dir):
    from nutrilearn.vision.network import ensure_model

    path = ensure_model(models_dir)
    mtime = path.stat().st_mtime_ns
    assert ensure_model(models_dir) == path and path.stat().st_mtime_ns == mtime
