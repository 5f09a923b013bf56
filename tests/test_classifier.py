"""The default food model on real photos, and its "not a recognised food" answer."""

from __future__ import annotations

import numpy as np
import pytest

from nutrilearn.config import Settings
from nutrilearn.nutrition import facts_for
from nutrilearn.pipeline import Analyzer, ModelInfo, photos_from_paths
from nutrilearn.vision.vocabulary import FOOD_LABELS, NOT_FOOD, display_name


def test_every_nameable_food_has_nutrition_and_a_readable_name():
    assert len(FOOD_LABELS) == 46
    for label in FOOD_LABELS:
        assert facts_for(label) is not None, label
        assert display_name(label)[0].isupper()


def test_breakfast_burritos_come_out_as_burrito(classifier, food10):
    found = photos_from_paths([food10 / "test" / "breakfast_burrito"])
    records = Analyzer(classifier, ModelInfo(), Settings.from_env()).analyze([p for _, p in found], user="t")
    share = np.mean([r.label == "burrito" for r in records])
    print(f"breakfast_burrito -> burrito: {share:.1%} of {len(records)}")
    assert len(records) == 50 and share >= 0.70


def test_not_food_for_pictures_of_nothing(classifier):
    rng = np.random.default_rng(0)
    pixels = np.stack(
        [np.full((224, 224, 3), v, np.uint8) for v in (0, 255)]
        + [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    )
    preds = classifier.predict(pixels)
    assert [p.label for p in preds] == [NOT_FOOD] * 4
    assert all(not p.is_food and 0.5 < p.confidence <= 1 for p in preds)
    assert all(len(p.top5) == 5 for p in preds)  # the closest foods are still offered


def test_real_food_is_rarely_called_not_food(classifier, food10):
    files = sorted(food10.glob("test/*/*.jpg"))[::5]  # 100 photos across the 10 classes
    found = photos_from_paths(files)
    records = Analyzer(classifier, ModelInfo(), Settings.from_env()).analyze([p for _, p in found], user="t")
    assert np.mean([r.label == NOT_FOOD for r in records]) <= 0.05
