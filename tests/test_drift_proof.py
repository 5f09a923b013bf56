"""Proof on real photos (food10): the detectors keep their false-alarm rate without a shift
and find the shifts they are meant to find. Fast versions; the full power study is
``bench/bench_drift.py`` (figures in bench/RESULTS.md).

The forward pass runs once per photo set and is cached under pytest's cache folder
(keyed by the file list and the model file), so every split below is index arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest

from nutrilearn.monitoring import scenarios
from nutrilearn.monitoring.drift import ALPHA, DriftMonitor

pytestmark = [pytest.mark.food10, pytest.mark.slow]

WINDOW = 200


@pytest.fixture(scope="session")
def drift_pool(request, tmp_path_factory, food10, classifier, models_dir):
    """Predictions for all 1,500 photos, and for the 500 test photos darkened by 40%."""
    from nutrilearn.config import Settings
    from nutrilearn.serving import build_analyzer

    analyzer = build_analyzer(Settings.from_env(), classifier)
    cache = (request.config.cache.mkdir("nutrilearn-drift") if getattr(request.config, "cache", None)
             else tmp_path_factory.mktemp("nutrilearn-drift"))  # -p no:cacheprovider: once per session
    model_file = next(iter(sorted(models_dir.glob("*.keras"))), None)
    files = scenarios.labelled_files(food10)
    pool = scenarios.predict_files(analyzer, files, cache_dir=cache, model_file=model_file)
    test_files = [(p, c) for p, c in files if p.parent.parent.name == "test"]
    dark = scenarios.predict_files(analyzer, test_files, scenarios.darken(0.4), cache_dir=cache,
                                   model_file=model_file)
    split = np.array([p.parent.parent.name for p, _ in files])
    assert len(pool) == 1500 and (pool["status"] == "ok").all()
    return {"all": pool, "train": pool[split == "train"].reset_index(drop=True), "dark": dark}


def test_no_shift_false_alarm_rate_within_nominal(drift_pool):
    """Random disjoint splits of the same photos: the report alarms at most alpha + 0.03
    of the time (Holm across signals), and so does each signal on its own."""
    rng = np.random.default_rng(2026)
    trials, alarms = 60, 0
    standalone = {s: 0 for s in ("food", "confidence", "image", "embedding")}
    for _ in range(trials):
        ref, cur = scenarios.null_split(drift_pool["all"], WINDOW, rng)
        report = DriftMonitor(permutations=100, seed=int(rng.integers(1 << 30))).fit(ref).report(cur)
        alarms += report.drifted
        for r in report.results:
            within = r.details.get("p_value_within_signal", r.p_value)
            standalone[r.signal] += bool(within <= ALPHA and r.distance >= r.min_distance)
    assert alarms / trials <= ALPHA + 0.03, f"{alarms} false alarms in {trials} splits"
    for signal, count in standalone.items():
        assert count / trials <= ALPHA + 0.03, f"{signal}: {count} false alarms in {trials} splits"


def test_darkened_photos_are_image_drift(drift_pool):
    """40% darker photos: image drift in >= 95% of trials at 200 photos a window, found
    through brightness (and contrast) rather than chance."""
    rng = np.random.default_rng(7)
    trials, found = 20, 0
    for _ in range(trials):
        ref = drift_pool["train"].iloc[rng.choice(len(drift_pool["train"]), WINDOW, replace=False)]
        cur = drift_pool["dark"].iloc[rng.choice(len(drift_pool["dark"]), WINDOW, replace=False)]
        result = DriftMonitor(permutations=100).fit(ref).report(cur).result("image")
        found += result.drifted
        drifted_properties = {c.feature for c in result.checks if c.drifted}
        assert "brightness" in drifted_properties
    assert found / trials >= 0.95


def test_one_food_share_raised_is_food_drift(drift_pool):
    """Breakfast burritos go from 10% to 40% of the photos: the predicted-food test finds it."""
    rng = np.random.default_rng(11)
    trials, found = 20, 0
    for _ in range(trials):
        ref, cur = scenarios.share_shift(drift_pool["all"], WINDOW, "breakfast_burrito", 0.4, rng)
        report = DriftMonitor(permutations=100).fit(ref).report(cur)
        found += report.result("food").drifted
    assert found / trials >= 0.95
    assert "burrito" in report.recommendation


@pytest.fixture(scope="session")
def food10_vocabulary_pool(drift_pool):
    """The same photos labelled by a model that knows food10's foods: a ridge classifier on
    the compact embeddings, cross-fitted (5 folds, about 71% accurate), standing in for a
    version with a trained food10 head. The default ImageNet head names few of these foods
    (baklava has no ImageNet class), so its label mix can barely move when they do."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import cross_val_predict

    from nutrilearn.vision.embedding import from_bytes

    pool = drift_pool["all"]
    x, y = from_bytes(pool["embedding"].tolist()), pool["true_label"].to_numpy()
    labels = cross_val_predict(RidgeClassifier(alpha=100.0), x, y, cv=5)
    assert (labels == y).mean() > 0.6
    return pool.assign(label=labels)


@pytest.mark.parametrize("food", ["baklava", "beet_salad", "beignets"])
def test_any_food_share_raised_is_food_drift_when_the_model_knows_the_foods(food10_vocabulary_pool, food):
    rng = np.random.default_rng(13)
    trials, found = 10, 0
    for _ in range(trials):
        ref, cur = scenarios.share_shift(food10_vocabulary_pool, WINDOW, food, 0.4, rng)
        found += DriftMonitor(permutations=100).fit(ref).report(cur).result("food").drifted
    assert found / trials >= 0.9


def test_other_foods_are_embedding_drift(drift_pool):
    """Reference: five foods; current: the other five. The embeddings tell them apart."""
    classes = sorted(drift_pool["all"]["true_label"].unique())
    rng = np.random.default_rng(5)
    for _ in range(5):
        ref, cur = scenarios.class_split(drift_pool["all"], WINDOW, classes[:5], rng)
        result = DriftMonitor(permutations=100).fit(ref).report(cur).result("embedding")
        assert result.drifted and result.distance > 0.6, result
