"""Drift statistics and windows on synthetic predictions frames (fast, no model)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nutrilearn.monitoring import drift_tests as dt
from nutrilearn.monitoring import windows
from nutrilearn.monitoring.drift import (
    ConfidenceDetector,
    DriftMonitor,
    EmbeddingDetector,
    FoodDistributionDetector,
    ImagePropertyDetector,
    drift_report,
)
from nutrilearn.vision.embedding import to_bytes


def frame(n: int, seed: int, *, brightness: float = 0.5, emb_shift: float = 0.0, labels=None,
          confidence=(5, 2), start="2026-11-01", freq="min") -> pd.DataFrame:
    """A predictions frame with the columns the detectors read."""
    rng = np.random.default_rng(seed)
    labs = labels if labels is not None else rng.choice([f"food{i}" for i in range(12)], n)
    emb = rng.normal(emb_shift, 1, (n, 128)).astype(np.float16)
    return pd.DataFrame({
        "request_id": [f"{seed}-{i}" for i in range(n)],
        "timestamp": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
        "status": "ok", "model_version": "1", "label": labs, "confidence": rng.beta(*confidence, n),
        "brightness": rng.normal(brightness, 0.1, n), "contrast": rng.normal(0.2, 0.05, n),
        "saturation": rng.normal(0.4, 0.1, n), "sharpness": rng.gamma(2, 100, n),
        "aspect": rng.choice([1.0, 4 / 3, 0.75], n), "image_width": 512,
        "image_height": rng.choice([512, 384], n), "embedding": [to_bytes(e) for e in emb],
    })


# --------------------------------------------------------------------------- statistics


def test_holm_matches_the_textbook_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04, running max
    assert dt.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert dt.holm([]).size == 0
    assert dt.holm([0.9, 0.8]).max() <= 1.0


def test_pooled_chi2_keeps_expected_counts_at_least_five():
    ref = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 3 + ["d"] * 2 + ["e"] * 1)
    cur = pd.Series(["a"] * 45 + ["b"] * 45 + ["c"] * 2 + ["f"] * 4)
    table = dt.count_table(ref, cur)
    res = dt.pooled_chi2(table)
    assert set(res.pooled) >= {"c", "d", "e", "f"}
    assert dt.OTHER in res.categories
    kept = table.loc[[c for c in res.categories if c != dt.OTHER]]
    pooled = table.loc[list(res.pooled)].sum()
    grid = pd.concat([kept, pooled.to_frame().T])
    expected = stats.contingency.expected_freq(grid.to_numpy())
    assert expected.min() >= 5
    assert 0 <= res.p_value <= 1


def test_distances_are_zero_for_the_same_shares_and_grow_with_a_shift():
    same = dt.count_table(pd.Series(list("aabbcc")), pd.Series(list("abcabc")))
    assert dt.js_distance(same) == pytest.approx(0, abs=1e-9)
    assert dt.psi(same) == pytest.approx(0, abs=1e-9)
    shifted = dt.count_table(pd.Series(list("aabbcc") * 10), pd.Series(list("aaaabc") * 10))
    assert dt.js_distance(shifted) > 0.1 and dt.psi(shifted) > 0.1


def test_ks_agrees_with_scipy_for_small_and_large_samples():
    rng = np.random.default_rng(0)
    for n, m in ((80, 60), (3000, 2000), (30000, 20000)):
        a, b = rng.normal(size=n), rng.normal(0.1, size=m)
        d, p, w = dt.ks(np.sort(a), b, wasserstein=True)
        ref = stats.ks_2samp(a, b, method="exact" if n * m < dt.EXACT_KS_LIMIT else "asymp")
        limit = n * m / (n + m) > dt.ASYMPTOTIC_KS_N  # the Kolmogorov limit: within 0.01 of scipy's asymp
        assert d == pytest.approx(ref.statistic)
        assert p == (pytest.approx(ref.pvalue, abs=0.01) if limit else pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12))
        assert w == pytest.approx(stats.wasserstein_distance(a, b))


def test_mmd_permutation_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(150, 16)), rng.normal(size=(150, 16))
    null = dt.mmd_permutation(x, y, permutations=200)
    assert null.p_value > 0.05 and abs(null.witness_auc - 0.5) < 0.1
    shifted = dt.mmd_permutation(x, y + 0.4, permutations=200)
    assert shifted.p_value <= 1 / 201 + 1e-12 and shifted.witness_auc > 0.8


def _brute_mmd2(k: np.ndarray, first: np.ndarray) -> float:
    """The biased MMD^2 of a split straight from its definition (block means)."""
    second = ~first
    return float(k[np.ix_(first, first)].mean() + k[np.ix_(second, second)].mean()
                 - 2 * k[np.ix_(first, second)].mean())


@pytest.mark.parametrize("n, m", [(300, 25), (40, 300), (120, 120)])
def test_mmd_test_equals_its_definition_for_every_permutation(n, m):
    """The observed statistic and the p-value equal a brute-force computation: the kernel
    from all pairwise distances with the reference's median bandwidth, and every
    permutation's block means over the same random draws."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(n, 8)), rng.normal(0.15, 1, size=(m, 8))
    result = dt.mmd_test(dt.mmd_reference(x, seed=5), y, permutations=60, seed=5)
    d2x = cdist(x, x, "sqeuclidean")
    assert result.bandwidth == pytest.approx(np.median(d2x[np.triu_indices(n, 1)]), rel=1e-9)
    z = np.vstack([x, y])
    k = np.exp(-cdist(z, z, "sqeuclidean") / result.bandwidth)
    first = np.r_[np.ones(n, bool), np.zeros(m, bool)]
    assert result.mmd2 == pytest.approx(_brute_mmd2(k, first), rel=1e-5, abs=1e-7)
    draws = dt.random_subsets(np.random.default_rng(5), n + m, min(n, m), 60)
    null = []
    for members in draws:  # the smaller side of each permutation
        small = np.zeros(n + m, bool)
        small[members] = True
        null.append(_brute_mmd2(k, small if n <= m else ~small))
    expected_p = (1 + np.count_nonzero(np.array(null) >= result.mmd2 - 1e-12)) / 61
    assert result.p_value == pytest.approx(expected_p)
    # The witness AUC: each point scored by the mean kernel to the reference minus to the
    # current window, both over the points outside its fold (the folds drawn after the
    # permutations, from the same generator).
    fold = np.random.default_rng(5)
    dt.random_subsets(fold, n + m, min(n, m), 60)
    fold = fold.permutation(np.arange(n + m) % 5)
    scores = [k[i, first & (fold != fold[i])].mean() - k[i, ~first & (fold != fold[i])].mean() for i in range(n + m)]
    from sklearn.metrics import roc_auc_score

    assert result.witness_auc == pytest.approx(roc_auc_score(~first, -np.array(scores)), abs=1e-9)


def test_mmd_draws_kept_for_a_size_give_what_fresh_draws_give():
    """Windows of one size share the reference's cached draws; the result is the one a
    fresh reference gives, and a bounded number of sizes is kept."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 6))
    reference = dt.mmd_reference(x)
    windows = [rng.normal(0.1 * i, 1, size=(30 + i % 2, 6)) for i in range(6)]
    kept = [dt.mmd_test(reference, y, permutations=80, seed=2) for y in windows]
    fresh = [dt.mmd_test(dt.mmd_reference(x), y, permutations=80, seed=2) for y in windows]
    assert kept == fresh
    for m in range(3, 3 + dt.MMDReference.DRAWS_KEPT + 5):
        reference.draws(m, 10, 5, 0)
    assert len(reference._draws) == dt.MMDReference.DRAWS_KEPT


def test_squared_distances_match_scikit_learn():
    from sklearn.metrics.pairwise import euclidean_distances

    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(40, 128)), rng.normal(size=(300, 128))
    assert np.allclose(dt.squared_distances(a, b), euclidean_distances(a, b, squared=True), rtol=1e-12, atol=1e-9)
    within = dt.squared_distances(a, a)
    assert np.allclose(within, euclidean_distances(a, squared=True), rtol=1e-12, atol=1e-9)
    assert (np.diag(within) == 0).all() and (within >= 0).all()


@pytest.mark.parametrize("m", [20, 300])  # the reference side: gathered pairs, or one product
def test_mmd_within_reference_sums_agree_both_ways(monkeypatch, m):
    rng = np.random.default_rng(8)
    reference = dt.mmd_reference(rng.normal(size=(200, 6)))
    y = rng.normal(0.1, 1, size=(m, 6))
    usual = dt.mmd_test(reference, y, permutations=50, seed=3)
    monkeypatch.setattr(dt, "GATHER_BELOW", 10**9 if m < 100 else 0)  # the other way
    other = dt.mmd_test(dt.mmd_reference(reference.x), y, permutations=50, seed=3)
    assert other.mmd2 == pytest.approx(usual.mmd2, rel=1e-6, abs=1e-9)
    assert other.p_value == usual.p_value and other.witness_auc == usual.witness_auc


def test_random_subsets_are_distinct_and_uniform():
    draws = dt.random_subsets(np.random.default_rng(0), 50, 7, 4000)
    assert draws.shape == (4000, 7)
    assert all(len(set(row)) == 7 for row in draws)
    counts = np.bincount(draws.ravel(), minlength=50)  # each index drawn 4000 * 7 / 50 times on average
    assert stats.chisquare(counts).pvalue > 0.001


def test_mmd_over_many_small_windows_against_one_reference_keeps_its_false_alarm_rate():
    """The over-time view tests one reference against many small windows; with the
    bandwidth set by the reference, the share of p <= 0.05 under no change must stay at
    5% (binomial test), and a real shift must still be found."""
    rng = np.random.default_rng(11)
    reference = dt.mmd_reference(rng.normal(size=(1000, 16)))
    p_values = np.array([dt.mmd_test(reference, rng.normal(size=(40, 16)), permutations=100, seed=i).p_value
                         for i in range(300)])
    alarms = int(np.count_nonzero(p_values <= 0.05))
    assert stats.binomtest(alarms, 300, 0.05, alternative="greater").pvalue > 0.001, alarms
    shifted = [dt.mmd_test(reference, rng.normal(0.5, 1, size=(40, 16)), permutations=100, seed=i).p_value
               for i in range(20)]
    assert np.mean(np.array(shifted) <= 0.05) >= 0.9


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    positive = rng.random(300) < 0.3
    scores = np.round(rng.normal(positive * 0.5, 1), 1)  # rounding makes ties
    assert dt.roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


# --------------------------------------------------------------------------- detectors


def test_detectors_fit_then_test_and_report_their_thresholds():
    ref, same, dark = frame(300, 1), frame(300, 2), frame(300, 3, brightness=0.3)
    for det in (FoodDistributionDetector(), ConfidenceDetector(), ImagePropertyDetector(), EmbeddingDetector()):
        result = det.fit(ref).test(same)
        assert result.threshold == 0.05 and not result.drifted and result.severity == "none"
        assert result.n_reference == result.n_current == 300
    image = ImagePropertyDetector().fit(ref).test(dark)
    assert image.drifted and image.severity == "high"
    flagged = {c.feature for c in image.checks if c.drifted}
    assert flagged == {"brightness"}
    # Holm within the family: adjusted p-values are never below the raw ones
    assert all(c.p_adjusted >= c.p_value for c in image.checks)


def test_food_shift_names_the_food_that_moved():
    rng = np.random.default_rng(4)
    ref_labels = rng.choice(["apple", "bread", "curry", "dal"], 400)
    cur_labels = np.where(rng.random(400) < 0.35, "curry", rng.choice(["apple", "bread", "curry", "dal"], 400))
    report = drift_report(frame(400, 1, labels=ref_labels), frame(400, 2, labels=cur_labels))
    food = report.result("food")
    assert food.drifted and food.details["largest_changes"][0]["label"] == "curry"
    assert "curry" in report.recommendation and report.drifted_signals == ["food"]


def test_materiality_floor_keeps_huge_windows_from_alarming_on_tiny_effects():
    ref = frame(20000, 1, confidence=(5, 2))
    cur = frame(20000, 2, confidence=(5.15, 2))  # tiny but, at this size, significant
    result = ConfidenceDetector().fit(ref).test(cur)
    assert result.p_value < 0.05 and result.distance < 0.05 and not result.drifted


def test_small_windows_are_not_tested_and_say_why():
    report = drift_report(frame(300, 1), frame(5, 2))
    assert not report.drifted
    assert all(r.verdict == "not tested" for r in report.results)
    assert "Not tested" in report.recommendation


def test_report_serialises_and_tabulates():
    report = drift_report(frame(200, 1), frame(200, 3, brightness=0.3, emb_shift=0.5),
                          reference_info={"spec": "first:200"}, current_info={"spec": "last:200"})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == "drift" and set(data["drifted_signals"]) >= {"image", "embedding"}
    assert data["reference"]["spec"] == "first:200" and len(data["signals"]) == 4
    table = report.to_frame()
    assert list(table["signal"]) == ["food", "confidence", "image", "embedding"]
    per_signal = report.checks_frame()["signal"].value_counts()
    assert (per_signal["image"], per_signal["confidence"], per_signal["embedding"]) == (6, 1, 1)
    assert per_signal["food"] >= 2  # the omnibus chi-squared + one z-test per (pooled) food


def test_drift_over_time_marks_the_chunks_that_moved():
    ref = frame(300, 1)
    early = frame(300, 2, start="2026-11-02")
    late = frame(300, 3, brightness=0.3, start="2026-11-03")
    series = DriftMonitor(permutations=50).fit(ref).over_time(pd.concat([early, late]), "1D")
    image = series[series["signal"] == "image"].set_index("start")
    assert list(image["drifted"]) == [False, True]
    assert (series["threshold"] == 0.05).all()
    by_count = DriftMonitor(permutations=50).fit(ref).over_time(pd.concat([early, late]), 300)
    assert by_count["start"].nunique() == 2


# --------------------------------------------------------------------------- windows


def test_window_specs_select_what_they_say():
    data = frame(1000, 1, freq="h")  # 1000 hours from 2026-11-01
    assert windows.select(data, "last:100", "current").frame["request_id"].iloc[-1] == "1-999"
    assert len(windows.select(data, "first:50", "reference").frame) == 50
    assert len(windows.select(data, "days:2", "current").frame) == 48
    r = windows.select(data, "range:2026-11-02..2026-11-03", "reference").frame
    assert len(r) == 24 and r["timestamp"].min() == pd.Timestamp("2026-11-02", tz="UTC")
    c = windows.select(data, "champion:2026-11-05T00:00@30", "reference").frame
    assert len(c) == 30 and c["timestamp"].min() == pd.Timestamp("2026-11-05", tz="UTC")
    since = (pd.Timestamp("2026-11-10", tz="UTC"), "1")
    c = windows.select(data, "champion:@24", "reference", champion=since)
    assert c.n == 24 and c.frame["timestamp"].min() == since[0] and c.params["version"] == "1"
    with pytest.raises(windows.WindowSpecError, match="alias history"):
        windows.select(data, "champion", "reference")
    with pytest.raises(windows.WindowSpecError, match="last:N"):
        windows.parse_spec("yesterday")
    with pytest.raises(windows.WindowSpecError):
        windows.parse_spec("last:-3")


def test_windows_skip_failed_predictions_and_overlap():
    data = frame(100, 1)
    data.loc[data.index[:10], "status"] = "error"
    ref = windows.select(data, "first:50", "reference")
    assert (ref.frame["status"] == "ok").all() and len(ref.frame) == 50
    cur = windows.without(windows.select(data, "last:80", "current"), ref)
    assert not cur.frame["request_id"].isin(ref.frame["request_id"]).any()
    assert ref.describe()["n"] == 50 and "start" in ref.describe()


def test_recommendation_names_a_model_change_between_windows():
    from nutrilearn.monitoring.drift import DriftReport, DriftResult, recommend

    food = DriftResult(signal="food", method="chi2", statistic=50.0, p_value=1e-9, threshold=0.05,
                       distance_name="js_distance", distance=0.4, min_distance=0.05, drifted=True,
                       severity="high", n_reference=300, n_current=300)
    changed = DriftReport((food,), 0.05, {"model_versions": "1"}, {"model_versions": "2"})
    same = DriftReport((food,), 0.05, {"model_versions": "2"}, {"model_versions": "2"})
    text = recommend(changed)
    assert text.startswith("The model changed: the reference was served by version 1, the current window by version 2")
    assert "expected consequence" in text and "different mix of foods" not in text
    assert changed.model_change and not same.model_change
    assert changed.to_dict()["model_change"] is True and same.to_dict()["model_change"] is False
    assert changed.to_dict()["expected_from_model_change"] == ["food"]
    assert "expected: the model changed" in changed.to_frame()["note"].iloc[0]
    assert "The model changed" not in recommend(same) and "different mix of foods" in recommend(same)


def test_embedding_projection_points_know_their_request():
    """Each point carries its request id and food (for its thumbnail and record): its
    coordinates are its own embedding's, and the sample is the one the MMD test draws."""
    from sklearn.decomposition import PCA

    from nutrilearn.monitoring.drift import embeddings
    from nutrilearn.monitoring.drift_views import embedding_projection
    from nutrilearn.vision.embedding import from_bytes

    ref, cur = frame(80, 1), frame(60, 2, emb_shift=1.0)
    cur.loc[3, "embedding"] = b""  # a row without an embedding has no point
    out = embedding_projection(ref, cur, cap=50)
    assert list(out["window"].value_counts().sort_index()) == [49, 50]  # current: 50 drawn, one empty
    assert "2-3" not in set(out["request_id"])
    pca = PCA(n_components=2, random_state=0).fit(embeddings(ref, 50, 0))
    for window, source in (("reference", ref), ("current", cur)):
        points = out[out["window"] == window]
        rows = source.set_index("request_id").loc[points["request_id"]]
        assert list(points["label"]) == list(rows["label"])
        np.testing.assert_allclose(points[["pc1", "pc2"]].to_numpy(),
                                   pca.transform(from_bytes(rows["embedding"].tolist())), rtol=1e-4, atol=1e-4)


def test_embedding_projection_of_windows_without_embeddings_is_empty():
    """Records logged without embeddings (older ones, or a store of synthetic rows) leave
    the map empty: the Drift page says so instead of failing."""
    from nutrilearn.monitoring.drift_views import embedding_projection

    ref, cur = frame(30, 1).assign(embedding=None), frame(30, 2)
    assert embedding_projection(ref, cur, cap=50).empty
    assert embedding_projection(frame(30, 1), cur.assign(embedding=None), cap=50).empty
