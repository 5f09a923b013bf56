"""Shared fixtures: the model is built once per test session; stores live in tmp dirs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FOOD10 = (ROOT.parent / "shared" / "data" / "food10").resolve()
GOLDEN = (ROOT.parent / "shared" / "testdata" / "efficientnet_lite0_golden.npz").resolve()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The project's models/ folder: built once (by `nutrilearn setup` or the first test)."""
    return ROOT / "models"


@pytest.fixture(scope="session")
def classifier(models_dir):
    from nutrilearn.vision.classifier import FoodClassifier

    return FoodClassifier.load(models_dir)


@pytest.fixture(scope="session")
def food10() -> Path:
    if not FOOD10.is_dir():
        pytest.skip(f"real photos not available: {FOOD10} is absent (a user's fresh clone has no shared/)")
    return FOOD10


@pytest.fixture(scope="session")
def golden() -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"reference logits not available: {GOLDEN} is absent")
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated NUTRILEARN_HOME: its own MLflow store, spool and meal log."""
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    for var in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def image_bytes(mode: str = "RGB", size=(320, 240), fmt: str = "PNG", color=(200, 120, 40), **save) -> bytes:
    """A synthetic image in any PIL mode/format: for plumbing tests, never for accuracy."""
    if mode in ("L", "P"):
        img = Image.new(mode, size, 128)
    elif mode == "I;16":
        arr = (np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0])).astype(np.uint16)
        img = Image.fromarray(arr)  # uint16 -> mode "I;16"
    elif mode in ("RGBA", "LA"):
        img = Image.new(mode, size, (*color, 128) if mode == "RGBA" else (128, 128))
    elif mode == "CMYK":
        img = Image.new(mode, size, (10, 80, 200, 0))
    elif mode == "noise":  # photo-like entropy, so compressed files are not tiny
        rng = np.random.default_rng(0)
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    else:
        img = Image.new(mode, size, color)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


from tests.e2e import browser, page  # noqa: E402,F401  (one Chromium per session; a page a test, for the browser tests)
from tests.issue11_store import issue11_store  # noqa: E402,F401  (issue 11's store, built once a session)
from tests.label_store import label_store  # noqa: E402,F401  (issue 14: ribs arrive in the last day; built once a session)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``rep_call``), so a fixture's teardown can
    see that its test failed (the browser ``page`` fixture then takes a screenshot)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
