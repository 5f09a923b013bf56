"""The two-sample statistics behind the drift detectors (numpy/scipy/scikit-learn, no loops
over samples).

- ``pooled_chi2``: chi-squared test of homogeneity on a 2 x K table of label counts, with
  rare classes pooled so that every expected count is at least 5 (Cochran's rule).
- ``js_distance`` / ``psi``: effect sizes for two label distributions.
- ``holm``: Holm's step-down adjustment (controls the family-wise error rate under any
  dependence between the tests, which image properties certainly have).
- ``mmd_reference`` / ``mmd_test``: maximum mean discrepancy with an RBF kernel (median
  heuristic bandwidth, set by the reference) and a permutation p-value; the reference is
  prepared once and tested against many windows (``mmd_permutation`` does both at once).
- ``witness_auc``: how well the kernel witness, cross-fitted, tells the windows apart (a
  domain classifier reusing the MMD kernel matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

try:  # the exact KS law's helper (private): ``_ks_exact_p`` falls back to ks_2samp without it
    from scipy.stats import _stats_py as _scipy_stats_py
except ImportError:  # pragma: no cover
    _scipy_stats_py = None

MIN_EXPECTED = 5.0
OTHER = "(other, pooled)"


@dataclass(frozen=True)
class Chi2Result:
    statistic: float
    p_value: float
    dof: int
    categories: tuple[str, ...]  # after pooling
    pooled: tuple[str, ...]  # labels folded into OTHER
    table: pd.DataFrame | None = None  # the pooled 2 x K counts (columns reference, current)


def count_table(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Label counts side by side (columns ``reference``, ``current``), every label of either."""
    table = pd.concat(
        {"reference": reference.value_counts(), "current": current.value_counts()}, axis=1
    ).fillna(0)
    return table.astype(float).sort_index()


def pooled_chi2(table: pd.DataFrame, min_expected: float = MIN_EXPECTED) -> Chi2Result:
    """Chi-squared homogeneity test; categories whose expected count is below ``min_expected``
    are pooled (smallest first) until every cell's expectation meets it."""
    table = table[(table.sum(axis=1) > 0)]
    n_ref, n_cur = table["reference"].sum(), table["current"].sum()
    share = min(n_ref, n_cur) / (n_ref + n_cur)  # expected count of a category = total * share (smaller row)
    totals = table.sum(axis=1).sort_values(kind="stable")
    rare = totals[totals * share < min_expected]
    keep = totals.index.difference(rare.index, sort=False)
    pooled = list(rare.index)
    if len(rare) and rare.sum() * share < min_expected and len(keep):
        # the pooled bin is itself too small: fold in the rarest kept categories until it is not
        extra = totals[keep].cumsum()
        need = int(np.searchsorted(extra.to_numpy() + rare.sum(), min_expected / share)) + 1
        pooled += list(extra.index[:need])
        keep = keep.difference(extra.index[:need], sort=False)
    rows = table.loc[list(keep)]
    if pooled:
        rows = pd.concat([rows, table.loc[pooled].sum().to_frame(OTHER).T])
    if len(rows) < 2:
        return Chi2Result(0.0, 1.0, 0, tuple(rows.index), tuple(pooled), rows)
    res = stats.chi2_contingency(rows[["reference", "current"]].to_numpy().T, correction=False)
    return Chi2Result(float(res.statistic), float(res.pvalue), int(res.dof), tuple(rows.index), tuple(pooled),
                      rows)


def share_z_tests(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One two-proportion z-test per category (pooled variance; the 2 x 2 chi-squared
    without continuity correction), vectorised: (z, two-sided p) per row of ``table``.
    An omnibus chi-squared spreads its power over K - 1 degrees of freedom; these find a
    change concentrated in one food."""
    return share_z_counts(table[["reference", "current"]].to_numpy(float))


def share_z_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``share_z_tests`` on a (K, 2) array of counts (reference, current)."""
    n_ref, n_cur = counts.sum(axis=0)
    p_ref, p_cur = counts[:, 0] / n_ref, counts[:, 1] / n_cur
    pooled = counts.sum(axis=1) / (n_ref + n_cur)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    z = np.divide(p_cur - p_ref, se, out=np.zeros_like(se), where=se > 0)
    return z, 2 * stats.norm.sf(np.abs(z))


def shares(table: pd.DataFrame) -> pd.DataFrame:
    return table / table.sum(axis=0).replace(0, np.nan)


def js_distance(table: pd.DataFrame) -> float:
    """Jensen-Shannon distance (base 2: 0 = same, 1 = disjoint) between the two columns."""
    return js_counts(table["reference"].to_numpy(), table["current"].to_numpy())


def js_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """``js_distance`` of two count vectors over the same categories."""
    if reference.sum() == 0 or current.sum() == 0:
        return float("nan")
    return float(jensenshannon(reference, current, base=2))


def psi(table: pd.DataFrame, epsilon: float = 1e-4) -> float:
    """Population stability index sum((c - r) ln(c / r)); empty shares floored at ``epsilon``.
    Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift."""
    return psi_counts(table["reference"].to_numpy(float), table["current"].to_numpy(float), epsilon)


def psi_counts(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """``psi`` of two count vectors over the same categories (an empty window's shares are 0)."""
    def floored_shares(counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        return np.clip(counts / total if total else np.zeros_like(counts), epsilon, None)

    r, c = floored_shares(reference), floored_shares(current)
    return float(np.sum((c - r) * np.log(c / r)))


def label_mix(reference: np.ndarray, current: np.ndarray,
              min_expected: float = MIN_EXPECTED) -> tuple[float, float, float]:
    """The food detector's figures from two count vectors over the same labels (sorted by
    name): the smallest Holm-adjusted p of the pooled chi-squared and the
    per-food z-tests, the Jensen-Shannon distance and the PSI. The same steps as
    ``count_table`` -> ``pooled_chi2`` -> ``share_z_tests`` -> ``holm``, ``js_distance``,
    ``psi``, on arrays: ~0.3 ms instead of ~10 ms a chunk on the over-time chart (those
    functions stay the readable definition; tests hold the two equal)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    seen = (ref + cur) > 0  # count_table lists the labels of either window only
    ref, cur = ref[seen], cur[seen]
    n_ref, n_cur = ref.sum(), cur.sum()
    share = min(n_ref, n_cur) / (n_ref + n_cur)
    totals = ref + cur
    order = np.argsort(totals, kind="stable")  # as totals.sort_values(kind="stable")
    rare_mask = totals[order] * share < min_expected
    rare, keep = order[rare_mask], order[~rare_mask]
    pooled = rare
    if len(rare) and totals[rare].sum() * share < min_expected and len(keep):
        extra = np.cumsum(totals[keep])
        need = int(np.searchsorted(extra + totals[rare].sum(), min_expected / share)) + 1
        pooled, keep = np.r_[rare, keep[:need]], keep[need:]
    rows = np.column_stack([ref[keep], cur[keep]])
    if len(pooled):
        rows = np.vstack([rows, [ref[pooled].sum(), cur[pooled].sum()]])
    if len(rows) < 2:
        chi_p = 1.0
    else:
        chi_p = float(stats.chi2_contingency(rows.T, correction=False).pvalue)
    _, p_food = share_z_counts(rows)
    p_min = float(holm(np.r_[chi_p, p_food]).min())
    return p_min, js_counts(ref, cur), psi_counts(ref, cur)


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


EXACT_KS_LIMIT = 1e6  # n * m below which scipy's exact KS p-value is used
ASYMPTOTIC_KS_N = 10_000  # effective size n m / (n + m) above which the limiting Kolmogorov law is used


def ks(reference: np.ndarray, current: np.ndarray, wasserstein: bool = False) -> tuple[float, float, float]:
    """Two-sample Kolmogorov-Smirnov D, its p-value, and (if asked) the Wasserstein-1 distance.

    ``reference`` must be sorted (detectors sort it once in ``fit``). D is the largest gap
    between the two empirical CDFs, which is attained at a data point, so it is read at
    every point with ``searchsorted`` (no merged sort); Wasserstein integrates the gap over
    the merged points. The p-value is scipy's: exact for small samples, then the ``kstwo``
    law ``ks_2samp(method="asymp")`` uses, and beyond an effective size of 10,000 its
    limit, the Kolmogorov distribution (``kstwobign``; the two differ by under 0.01 there
    and the limit costs microseconds instead of ~40 ms). Ties (aspect ratios, sizes) make
    the test conservative."""
    current = np.sort(np.asarray(current, dtype=float))
    n, m = len(reference), len(current)

    def gap(points: np.ndarray) -> np.ndarray:
        return np.searchsorted(reference, points, side="right") / n - np.searchsorted(current, points, side="right") / m

    points = reference
    if n > 2 * m + 2:
        # Between two current points the current CDF is flat while the reference's climbs,
        # so among reference points the gap is largest (and smallest) at those next to a
        # current point or at either end: the same D from 2 m + 2 points instead of n.
        near = np.searchsorted(reference, current, side="left")
        points = reference[np.r_[0, n - 1, np.maximum(near - 1, 0), np.minimum(near, n - 1)]]
    d = float(max(np.abs(gap(points)).max(), np.abs(gap(current)).max()))
    w = float("nan")
    if wasserstein:
        z = np.sort(np.concatenate([reference, current]), kind="stable")  # two sorted runs: a linear merge
        w = float(np.sum(np.abs(gap(z)[:-1]) * np.diff(z)))
    effective = n * m / (n + m)
    if n * m < EXACT_KS_LIMIT:
        p = _ks_exact_p(reference, current, d)
    elif effective <= ASYMPTOTIC_KS_N:
        p = float(stats.kstwo.sf(d, np.round(effective)))
    else:
        p = float(stats.kstwobign.sf(np.sqrt(effective) * d))
    return d, min(max(p, 0.0), 1.0), w


def _ks_exact_p(reference: np.ndarray, current: np.ndarray, d: float) -> float:
    """``ks_2samp(reference, current, method="auto").pvalue`` for the D already found: scipy's
    exact two-sided law of (n, m, D) without the call's re-sort and argument checking, which
    cost ~0.4 ms a test, 80% of it (the over-time chart runs seven KS tests per chunk). The
    full call whenever ``ks_2samp`` would not use the exact law, or scipy moved that helper."""
    n, m = len(reference), len(current)
    exact = getattr(_scipy_stats_py, "_attempt_exact_2kssamp", None)
    if exact is not None and max(n, m) <= 10_000 and min(n, m) > 0:  # ks_2samp's MAX_AUTO_N
        try:
            ok, _, p = exact(n, m, math.gcd(n, m), d, "two-sided")
        except Exception:  # a changed signature: the public call decides
            ok = False
        if ok:
            return float(np.clip(p, 0, 1))
    return float(stats.ks_2samp(reference, current, method="auto").pvalue)


def median_bandwidth(d2: np.ndarray, rng: np.random.Generator, max_points: int = 1000) -> float:
    """Median heuristic: the median squared distance between points (a random
    ``max_points`` of them), read off the squared-distance matrix ``d2``."""
    idx = np.sort(rng.permutation(len(d2))[:max_points])
    sub = d2[np.ix_(idx, idx)]
    upper = sub[np.triu_indices_from(sub, k=1)]
    med = float(np.median(upper)) if upper.size else 1.0
    return med if med > 0 else 1.0


@dataclass(frozen=True)
class MMDResult:
    mmd2: float  # biased (V-statistic) estimate of MMD^2 with the RBF kernel
    p_value: float  # permutation p-value, (1 + #{perm >= observed}) / (1 + permutations)
    bandwidth: float  # median squared distance; kernel k(x, y) = exp(-|x - y|^2 / bandwidth)
    permutations: int
    witness_auc: float  # cross-fitted AUC of the kernel witness as a domain classifier


@dataclass(frozen=True, eq=False)
class MMDReference:
    """A reference sample made ready for many MMD tests: the bandwidth (median heuristic
    over the reference alone, as alibi-detect's ``configure_kernel_from_x_ref``), its own
    kernel block and that block's row sums. A test then computes only the current
    window's kernel rows, so many small windows against one reference cost little."""

    x: np.ndarray  # (n, d) float64
    squared_norms: np.ndarray  # (1, n)
    bandwidth: float
    k: np.ndarray  # (n, n) float32 kernel block
    row_sums: np.ndarray  # (n,) float64


def mmd_reference(x: np.ndarray, seed: int = 0) -> MMDReference:
    from sklearn.metrics.pairwise import euclidean_distances

    x = np.asarray(x, np.float64)
    d2 = np.maximum(euclidean_distances(x, squared=True), 0)
    bandwidth = median_bandwidth(d2, np.random.default_rng(seed))
    k = np.exp(-d2 / bandwidth).astype(np.float32)
    return MMDReference(x, (x * x).sum(axis=1)[None, :], bandwidth, k, k.sum(axis=1, dtype=np.float64))


def mmd_permutation(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0,
                    folds: int = 5) -> MMDResult:
    """MMD two-sample test of ``x`` (the reference) against ``y``; see ``mmd_test``."""
    return mmd_test(mmd_reference(x, seed), y, permutations, seed, folds)


# Largest (permutations x s x s) gather of kernel entries; past it the sums go through one
# matrix product instead (the same numbers, at a cost that grows with N^2, not s^2).
MAX_GATHER = 4_000_000


def mmd_test(reference: MMDReference, y: np.ndarray, permutations: int = 200, seed: int = 0,
             folds: int = 5) -> MMDResult:
    """MMD permutation test against a prepared reference. A permutation is a random
    choice of which s points form the smaller side; its biased statistic needs only the
    kernel sum within that side, K[S,S]: with the pooled kernel's row sums r and total T,
    the larger side's sum is T - 2 r[S] + K[S,S] and the cross sum r[S] - K[S,S]. For a
    small current window that is s^2 entries a permutation, not an (N x N) @ (N x B)
    product. The same kernel matrix gives the effect size: the witness function (mean
    kernel to x minus mean kernel to y), fitted on the other folds, scores each point;
    its ROC AUC is a domain classifier's."""
    from sklearn.metrics.pairwise import euclidean_distances

    rng = np.random.default_rng(seed)
    x, y = reference.x, np.asarray(y, np.float64)
    n, m = len(x), len(y)
    k = np.empty((n + m, n + m), np.float32)
    k[:n, :n] = reference.k
    cross = euclidean_distances(y, x, Y_norm_squared=reference.squared_norms, squared=True)
    k[n:, :n] = np.exp(-np.maximum(cross, 0) / reference.bandwidth)
    k[:n, n:] = k[n:, :n].T
    k[n:, n:] = np.exp(-np.maximum(euclidean_distances(y, squared=True), 0) / reference.bandwidth)
    rows = np.r_[reference.row_sums + k[n:, :n].sum(axis=0, dtype=np.float64),
                 k[n:].sum(axis=1, dtype=np.float64)]
    s, big = min(n, m), max(n, m)
    observed_side = np.arange(s) if n <= m else np.arange(n, n + m)
    sides = np.vstack([observed_side, random_subsets(rng, n + m, s, permutations)])  # (B + 1, s)
    within_small = _within_sums(k, sides)
    rows_small = rows[sides].sum(axis=1)
    within_big = rows.sum() - 2 * rows_small + within_small
    values = within_small / s ** 2 + within_big / big ** 2 - 2 * (rows_small - within_small) / (n * m)
    observed, null = float(values[0]), values[1:]
    p = (1.0 + np.count_nonzero(null >= observed - 1e-12)) / (1.0 + permutations)
    side = np.r_[np.ones(n, bool), np.zeros(m, bool)]
    return MMDResult(observed, float(p), reference.bandwidth, permutations, witness_auc(k, side, folds, rng))


def random_subsets(rng: np.random.Generator, population: int, size: int, count: int) -> np.ndarray:
    """``count`` independent uniform draws of ``size`` distinct indices out of
    ``population``, as a (count, size) array: the first ``size`` steps of a Fisher-Yates
    shuffle, run on all rows at once (a full shuffle of every row costs population steps)."""
    idx = np.tile(np.arange(population), (count, 1))
    rows = np.arange(count)
    for i in range(size):
        j = rng.integers(i, population, size=count)
        picked = idx[rows, j]
        idx[rows, j] = idx[rows, i]
        idx[rows, i] = picked
    return idx[:, :size]


def _within_sums(k: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """For each row of ``sides`` (indices into ``k``), the sum of ``k`` over those
    indices' pairs, in float64."""
    count, s = sides.shape
    if count * s * s <= MAX_GATHER:
        pairs = sides[:, :, None] * len(k) + sides[:, None, :]  # flat positions in k
        return k.ravel().take(pairs).sum(axis=(1, 2), dtype=np.float64)
    members = np.zeros((len(k), count))
    members[sides.T, np.arange(count)] = 1.0
    return np.einsum("ij,ij->j", members, (k @ members.astype(np.float32)).astype(np.float64))


def witness_auc(k: np.ndarray, side: np.ndarray, folds: int, rng: np.random.Generator) -> float:
    """Cross-fitted kernel-witness classifier (a Parzen-window domain classifier): each
    point is scored by the witness built from the points outside its fold."""
    fold = rng.permutation(np.arange(len(side)) % folds)
    outside = fold[:, None] != np.arange(folds)[None, :]  # (N, F): point used to score fold f
    w = np.where(side[:, None], 1.0, 0.0) * outside
    v = np.where(side[:, None], 0.0, 1.0) * outside
    weights = (w / w.sum(axis=0) - v / v.sum(axis=0)).astype(np.float32)
    scores = (k @ weights)[np.arange(len(side)), fold]  # 1 = looks like x, the reference
    return roc_auc(~side, -scores)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC through the Mann-Whitney identity on average ranks: the same number as
    scikit-learn's ``roc_auc_score`` (ties count one half), without its input checks,
    which cost more than the ranking at these sizes."""
    ranks = stats.rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
