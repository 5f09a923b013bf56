"""The over-time fast path gives the figures of the per-chunk report it replaced.

``DriftMonitor.over_time`` used to run ``report`` on every chunk (a usable filter, pandas
tables and scipy's full KS call per chunk and detector: ~2.6 s for 121 days at 1M
predictions). It now prepares each detector's columns once and tests the chunks from
arrays, before alpha (``chunk_tests``), and applies alpha after (``ChunkTests.at``).
These tests hold every figure equal, bit for bit, to the old loop, kept here as the oracle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nutrilearn.monitoring import drift_tests as dt
from nutrilearn.monitoring import performance, windows
from nutrilearn.monitoring.drift import DriftMonitor
from test_drift_units import frame


def per_chunk_report(monitor: DriftMonitor, data: pd.DataFrame, every) -> pd.DataFrame:
    """The old ``DriftMonitor.over_time``: the whole report on each chunk."""
    rows = []
    for start, end, part in windows.chunks(data, every):
        for r in monitor.report(part).results:
            rows.append({"start": start, "end": end, "n": len(part), "signal": r.signal, "p_value": r.p_value,
                         "threshold": r.threshold, "distance": r.distance, "distance_name": r.distance_name,
                         "min_distance": r.min_distance, "drifted": r.drifted, "severity": r.severity})
    return pd.DataFrame(rows, columns=["start", "end", "n", "signal", "p_value", "threshold", "distance",
                                       "distance_name", "min_distance", "drifted", "severity"])


def _later() -> pd.DataFrame:
    """Five days after the reference: quiet, then darker photos, a food mix moved, less sure
    answers, other embeddings; with rows the tests must skip (errors, shadows, challenger
    answers), missing values, and a day too small to test."""
    days = [frame(240, 10 + i, start=f"2026-11-{2 + i:02d}", freq="5min") for i in range(5)]
    days[1] = frame(240, 21, brightness=0.42, start="2026-11-03", freq="5min")  # a small move
    days[2] = frame(240, 22, brightness=0.3, emb_shift=0.4, start="2026-11-04", freq="5min")
    days[3] = frame(240, 23, labels=np.r_[["food0"] * 150, ["food1"] * 80, ["pizza"] * 10], confidence=(2, 2),
                    start="2026-11-05", freq="5min")
    tiny = frame(12, 30, start="2026-11-08", freq="h")  # under MIN_SAMPLES: not tested
    data = pd.concat([*days, tiny], ignore_index=True)
    data["model_alias"] = "champion"
    data.loc[data.index % 37 == 0, "status"] = "error"
    data.loc[data.index % 41 == 0, "model_alias"] = "challenger"
    data.loc[data.index % 43 == 0, "request_id"] += "::shadow"
    data.loc[data.index % 29 == 0, "confidence"] = np.nan
    data.loc[data.index % 31 == 0, "brightness"] = np.nan
    data.loc[data.index % 47 == 0, "label"] = None
    data.loc[data.index % 53 == 0, "embedding"] = None
    return data.sample(frac=1, random_state=0)  # chunking sorts by time itself


@pytest.mark.parametrize(("every", "n_reference"), [("1D", 300), ("6h", 300), (150, 25), (7, 300)])
def test_over_time_equals_the_report_on_each_chunk_at_every_alpha(every, n_reference):
    ref = frame(n_reference, 1, start="2026-11-01", freq="min")
    later = _later()
    chunked = DriftMonitor(permutations=100).fit(ref).chunk_tests(later, every)  # once, before alpha
    drifted = 0
    for alpha in (0.01, 0.05, 0.5):
        expected = per_chunk_report(DriftMonitor(alpha, permutations=100).fit(ref), later, every)
        got = chunked.at(alpha)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        drifted += int(got["drifted"].sum())
    assert DriftMonitor(0.05, permutations=100).fit(ref).over_time(later, every).equals(chunked.at(0.05))
    if every == "1D" and n_reference == 300:  # the data moves: the comparison covers verdicts both ways
        final = chunked.at(0.05)
        assert final["drifted"].any() and not final["drifted"].all() and final["p_value"].isna().any()
        assert set(final.loc[final["drifted"], "signal"]) == {"food", "confidence", "image", "embedding"}
        assert set(final["severity"]) >= {"none", "high"}
    assert drifted > 0 or every == 7  # chunks of 7 are too small for any test


def test_chunks_over_the_embedding_cap_draw_what_the_report_draws():
    """Chunks with more embeddings than ``sample_cap``: the chunk tests draw the same
    embeddings as the report on that chunk (one draw, ``embedded_positions``)."""
    ref, later = frame(300, 1), _later()
    sizes = [int(part["embedding"].notna().sum()) for _, _, part in windows.chunks(later, "1D")]
    assert max(sizes) > 25  # some chunks are over the cap
    chunked = DriftMonitor(permutations=50, sample_cap=25).fit(ref).chunk_tests(later, "1D")
    expected = per_chunk_report(DriftMonitor(0.05, permutations=50, sample_cap=25).fit(ref), later, "1D")
    pd.testing.assert_frame_equal(chunked.at(0.05), expected, check_exact=True)


def test_over_time_of_nothing_usable_is_empty_with_its_columns():
    ref = frame(100, 1)
    none = frame(50, 2).assign(status="error")
    got = DriftMonitor(permutations=10).fit(ref).over_time(none, "1D")
    assert got.empty and got.equals(per_chunk_report(DriftMonitor(permutations=10).fit(ref), none, "1D"))


def test_chunk_spans_are_the_chunks():
    data = _later()
    for every in ("1D", "6h", 150):
        usable, spans = windows.chunk_spans(data, every)
        parts = list(windows.chunks(data, every))
        assert len(spans) == len(parts)
        for (start, end, rows), (s, e, part) in zip(spans, parts):
            assert (start, end) == (s, e) and usable.iloc[rows].equals(part)


def _ks_by_definition(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """D as the largest gap at every point of both samples, and scipy's p-value."""
    cur = np.sort(current)
    n, m = len(reference), len(cur)
    everywhere = np.r_[reference, cur]
    gap = np.searchsorted(reference, everywhere, side="right") / n - np.searchsorted(cur, everywhere, side="right") / m
    d = float(np.abs(gap).max())
    if n * m < dt.EXACT_KS_LIMIT:
        return d, float(stats.ks_2samp(reference, current, method="auto").pvalue)
    effective = n * m / (n + m)
    law = stats.kstwo.sf(d, np.round(effective)) if effective <= dt.ASYMPTOTIC_KS_N else \
        stats.kstwobign.sf(np.sqrt(effective) * d)
    return d, float(law)


def test_ks_reads_d_at_the_points_next_to_the_current_sample_and_scipys_exact_p():
    rng = np.random.default_rng(0)
    for trial in range(600):
        n = int(rng.choice([20, 21, 50, 165, 500, 999, 5000, 20000]))
        m = int(rng.choice([20, 25, 40, 165, 500, 3000]))
        kind = trial % 4
        if kind == 0:
            ref, cur = rng.normal(0, 1, n), rng.normal(rng.normal(0, 0.3), 1, m)
        elif kind == 1:  # aspect ratios: three values, all tied
            ref, cur = rng.choice([1.0, 4 / 3, 0.75], n), rng.choice([1.0, 4 / 3, 0.75], m, p=[0.5, 0.3, 0.2])
        elif kind == 2:
            ref, cur = rng.integers(0, 10, n).astype(float), rng.integers(0, 12, m).astype(float)
        else:  # the current sample drawn from the reference's own values
            ref = rng.normal(0, 1, n)
            cur = rng.choice(ref, m)
        ref = np.sort(ref)
        d, p, _ = dt.ks(ref, cur)
        assert (d, p) == _ks_by_definition(ref, cur), (n, m, kind)


def test_ks_falls_back_to_scipys_call_without_its_exact_helper(monkeypatch):
    rng = np.random.default_rng(1)
    ref, cur = np.sort(rng.normal(0, 1, 300)), rng.normal(0.2, 1, 120)
    with_helper = dt.ks(ref, cur)
    monkeypatch.setattr(dt, "_scipy_stats_py", None)
    assert dt.ks(ref, cur)[:2] == with_helper[:2] == _ks_by_definition(ref, cur)


def _label_mix_by_the_detectors_steps(ref: pd.Series, cur: pd.Series) -> tuple[float, float, float]:
    table = dt.count_table(ref, cur)
    chi = dt.pooled_chi2(table)
    _, p_food = dt.share_z_tests(chi.table)
    return float(dt.holm(np.r_[chi.p_value, p_food]).min()), dt.js_distance(table), dt.psi(table)


def test_label_mix_equals_the_pandas_steps_pooling_included():
    rng = np.random.default_rng(2)
    names = np.array(["Apple_pie", "apple", "b", "food0", "food1", "pizza", "ramen", "sushi", "zz", "éclair"])
    pooled = 0
    for trial in range(300):
        k = int(rng.integers(1, len(names) + 1))
        weights = rng.dirichlet(np.full(k, rng.choice([0.2, 1, 5])))
        ref = pd.Series(rng.choice(names[:k], int(rng.integers(20, 400)), p=weights))
        cur_names = names[int(rng.integers(0, 3)):k] if k > 3 else names[:k]
        cur = pd.Series(rng.choice(cur_names, int(rng.integers(20, 300))))
        vocabulary = np.unique(np.r_[names, ["never seen"]])  # labels in neither window included
        counts = [np.array([(s == v).sum() for v in vocabulary]) for s in (ref, cur)]
        got = dt.label_mix(*counts)
        expected = _label_mix_by_the_detectors_steps(ref, cur)
        assert got[0] == expected[0] and got[2] == expected[2], trial
        assert got[1] == expected[1] or (np.isnan(got[1]) and np.isnan(expected[1]))
        pooled += bool(dt.pooled_chi2(dt.count_table(ref, cur)).pooled)
    assert pooled > 50  # rare classes were pooled in many of them


def test_isin_is_pandas_isin():
    cases = [(pd.Series(["a", "b", None, "c"], dtype="str"), pd.Series(["b", "c"], dtype="str")),
             (pd.Series(["a", "b", None, "c"], dtype=object), pd.Series(["b", None], dtype=object)),
             (pd.Series(["a", "b"], dtype="str"), pd.Series([], dtype="str")),
             (pd.Series([1, 2, 3]), pd.Series(["1", 2], dtype=object)),
             (pd.Series(["a", "b"], dtype="str"), pd.Series(["a", 1], dtype=object))]
    for values, among in cases:
        assert windows.isin(values, among).tolist() == values.isin(among).tolist()


def _performance_per_chunk(data: pd.DataFrame, every, truth) -> pd.DataFrame:
    """The old ``performance_over_time``: ``estimate`` on each chunk and its labelled rows."""
    rows = []
    for start, end, part in windows.chunks(data, every):
        judged = truth[truth["request_id"].isin(part["request_id"])] if truth is not None else None
        rows.append({"start": start, "end": end, **performance.estimate(part, judged)})
    return pd.DataFrame(rows, columns=["start", "end", "n", "expected_accuracy", "expected_lower", "expected_upper",
                                       "labelled", "realized_accuracy", "realized_lower", "realized_upper"])


@pytest.mark.parametrize("every", ["1D", "6h", 150])
def test_performance_over_time_equals_the_estimate_of_each_chunk(every):
    data = _later()
    judged = data.iloc[::4]
    feedback = pd.DataFrame({"request_id": judged["request_id"], "timestamp": judged["timestamp"], "user": "a",
                             "label": judged["label"].where(judged["confidence"] > 0.6, "other"),
                             "predicted_label": judged["label"], "source": "app", "kind": "confirmed"})
    truth = performance.labelled(data, feedback)
    doubled = pd.concat([truth, truth.iloc[:20]])  # a request judged twice counts twice, as before
    for t in (None, truth, truth.iloc[:0], doubled):
        got = performance.performance_over_time(data, every, t)
        pd.testing.assert_frame_equal(got, _performance_per_chunk(data, every, t), check_exact=True)
    assert performance.performance_over_time(data, every, truth)["labelled"].sum() == len(truth)


def test_a_detector_without_a_chunk_path_gets_the_report_on_each_chunk():
    from nutrilearn.monitoring.drift import ConfidenceDetector, Detector

    class Mine(ConfidenceDetector):
        """A detector of someone's own: it tests a chunk only through ``test``."""

        chunk_outcomes = Detector.chunk_outcomes

    ref, later = frame(200, 1), _later()
    monitor = DriftMonitor(0.05, detectors=[Mine(0.05)]).fit(ref)
    got = monitor.over_time(later, "1D")
    pd.testing.assert_frame_equal(got, per_chunk_report(monitor, later, "1D"), check_exact=True)
    assert got["p_value"].notna().any()
