"""Performance without labels (CBPE), realized accuracy, and calibration (ECE, reliability)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nutrilearn.monitoring import performance
from test_drift_units import frame


def _judged(n: int, seed: int, warp=lambda p: p) -> pd.DataFrame:
    """Predictions whose correctness is Bernoulli(warp(confidence)): calibrated when warp is identity."""
    rng = np.random.default_rng(seed)
    data = frame(n, seed, freq="h")
    data["confidence"] = rng.uniform(0.2, 1.0, n)
    correct = rng.random(n) < warp(data["confidence"].to_numpy())
    data["true_label"] = np.where(correct, data["label"], "something else")
    return data


def test_cbpe_tracks_realized_accuracy_when_calibrated():
    data = _judged(4000, 1)
    truth = performance.labelled(data)
    by_day = performance.performance_over_time(data, "1D", truth)
    # the CBPE band is where a calibrated model's realized accuracy lands 95% of the time
    inside = by_day["realized_accuracy"].between(by_day["expected_lower"], by_day["expected_upper"])
    assert len(by_day) >= 100 and inside.mean() >= 0.88
    whole = performance.estimate(data, truth)
    assert whole["expected_accuracy"] == pytest.approx(whole["realized_accuracy"], abs=0.03)
    assert whole["realized_lower"] < whole["realized_accuracy"] < whole["realized_upper"]


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    ece_ok, table = performance.reliability(performance.labelled(_judged(5000, 2)))
    assert ece_ok < 0.03 and table["count"].sum() == 5000
    ece_bad, bad = performance.reliability(performance.labelled(_judged(5000, 3, warp=lambda p: p ** 3)))
    assert ece_bad > 0.15 and (bad["gap"] < 0).all()  # accuracy below confidence in every bin
    manual = float(np.sum(bad["count"] / bad["count"].sum() * (bad["accuracy"] - bad["mean_confidence"]).abs()))
    assert ece_bad == pytest.approx(manual)


def test_calibration_by_version_and_window():
    a = _judged(1000, 4).assign(model_version="1")
    b = _judged(1000, 5, warp=lambda p: p ** 2).assign(model_version="2")
    truth = performance.labelled(pd.concat([a, b]))
    table = performance.calibration_by(truth.assign(window=np.where(truth.index % 2, "reference", "current")),
                                       ["model_version", "window"])
    assert len(table) == 4
    ece = table.groupby("model_version")["ece"].mean()
    assert ece["2"] > ece["1"] + 0.05


def test_feedback_joins_on_request_id():
    data = frame(100, 6)
    fb = pd.DataFrame({"request_id": data["request_id"].iloc[:10], "timestamp": data["timestamp"].iloc[:10],
                       "user": "a", "label": ["food0"] * 10, "predicted_label": data["label"].iloc[:10],
                       "source": "app", "kind": "confirmed"})
    truth = performance.labelled(data, fb)
    assert len(truth) == 10
    assert truth["correct"].sum() == (data["label"].iloc[:10] == "food0").sum()
    assert performance.labelled(data).empty  # no feedback, no folder labels: nothing judged
