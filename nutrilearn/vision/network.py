"""EfficientNet-Lite0 in Keras, and the port of the PyTorch ImageNet weights into it.

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6, a fixed 32-channel stem and
1280-channel head. Keras ``padding="same"`` is TensorFlow's asymmetric "same" padding,
which is what these weights were trained with. Layer names mirror the PyTorch keys so the
port is a table lookup and every tensor in the file is accounted for exactly once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from nutrilearn.vision.model_files import KERAS_FILENAME
from nutrilearn.vision.weights import WeightsError, load_weights

INPUT_SIZE = 224
EMBEDDING_DIM = 1280
NUM_IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
MODEL_FILENAME = KERAS_FILENAME


@dataclass(frozen=True)
class StageSpec:
    kernel: int
    stride: int
    expand: int
    filters: int
    repeats: int


# EfficientNet-B0 stages (width and depth multipliers are 1.0 for Lite0).
STAGES = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280


def _conv_bn(x, filters: int, kernel: int, stride: int, conv_name: str, bn_name: str, act: bool):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=conv_name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(x)
    return layers.ReLU(6.0)(x) if act else x


def build_network() -> keras.Model:
    """The bare network: image batch (N, 224, 224, 3), normalised -> (logits, pooled 1280-d)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "_conv_stem", "_bn0", act=True)
    in_filters = STEM_FILTERS
    index = 0
    for stage in STAGES:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            prefix = f"_blocks.{index}."
            shortcut = x
            if stage.expand != 1:
                x = _conv_bn(x, in_filters * stage.expand, 1, 1, prefix + "_expand_conv", prefix + "_bn0", act=True)
            x = layers.DepthwiseConv2D(
                stage.kernel, strides=stride, padding="same", use_bias=False, name=prefix + "_depthwise_conv"
            )(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=prefix + "_bn1")(x)
            x = layers.ReLU(6.0)(x)
            x = _conv_bn(x, stage.filters, 1, 1, prefix + "_project_conv", prefix + "_bn2", act=False)
            if stride == 1 and in_filters == stage.filters:
                x = layers.Add()([shortcut, x])
            in_filters = stage.filters
            index += 1
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "_conv_head", "_bn1", act=True)
    pooled = layers.GlobalAveragePooling2D(name="pooled")(x)
    logits = layers.Dense(NUM_IMAGENET_CLASSES, name="_fc")(pooled)
    return keras.Model(inputs, [logits, pooled], name="efficientnet_lite0")


def _keras_weights_for(layer: keras.layers.Layer, state: "OrderedDict[str, np.ndarray]", used: set[str]) -> list[np.ndarray] | None:
    """The PyTorch tensors for one Keras layer, transposed to Keras's layout."""

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise WeightsError(f"weights file has no tensor {key} for layer {layer.name}")
        if key in used:
            raise WeightsError(f"tensor {key} would be used twice")
        used.add(key)
        return state[key]

    name = layer.name
    if isinstance(layer, layers.DepthwiseConv2D):
        return [take(name + ".weight").transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
    if isinstance(layer, layers.Conv2D):
        return [take(name + ".weight").transpose(2, 3, 1, 0)]  # (O,I,kh,kw) -> (kh,kw,I,O)
    if isinstance(layer, layers.BatchNormalization):
        weights = [take(name + s) for s in (".weight", ".bias", ".running_mean", ".running_var")]
        take(name + ".num_batches_tracked")  # a training counter: accounted for, not needed
        return weights
    if isinstance(layer, layers.Dense):
        return [take(name + ".weight").T, take(name + ".bias")]
    return None


def port_weights(model: keras.Model, state: "OrderedDict[str, np.ndarray]") -> None:
    """Copy every tensor into the model; fail if any is missing, unused or the wrong shape."""
    used: set[str] = set()
    for layer in model.layers:
        weights = _keras_weights_for(layer, state, used)
        if weights is None:
            if layer.weights:
                raise WeightsError(f"no port rule for layer {layer.name}")
            continue
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise WeightsError(f"layer {layer.name}: shapes {got} do not fit {expected}")
        layer.set_weights([w.astype(np.float32) for w in weights])
    unused = [key for key in state if key not in used]
    if unused:
        raise WeightsError(f"{len(unused)} tensors in the weights file were not used, e.g. {unused[:3]}")


def build_imagenet_model(weights_path: Path | None = None) -> keras.Model:
    """The network with the verified ImageNet weights ported in."""
    model = build_network()
    port_weights(model, load_weights(weights_path))
    return model


def model_path(models_dir: Path) -> Path:
    return Path(models_dir) / MODEL_FILENAME


def ensure_model(models_dir: Path, rebuild: bool = False) -> Path:
    """Build the model once and cache it under ``models_dir``; return the file."""
    path = model_path(models_dir)
    if path.is_file() and not rebuild:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_imagenet_model()
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(path)  # atomic: a crash mid-save never leaves a half-written model
    return path


def load_model(models_dir: Path) -> keras.Model:
    """The cached model (built first if absent). Keras safe mode: no lambdas, no pickles."""
    return keras.models.load_model(ensure_model(models_dir), compile=False, safe_mode=True)
