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
  Its effect size is how well the kernel witness, cross-fitted, tells the windows apart
  (a domain classifier reusing the MMD kernel blocks).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

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
    sub = d2
    if len(d2) > max_points:  # (at most that many: all of them, without the copy)
        idx = np.sort(rng.permutation(len(d2))[:max_points])
        sub = d2[np.ix_(idx, idx)]
    upper = sub[np.triu_indices_from(sub, k=1)]
    med = float(np.median(upper)) if upper.size else 1.0
    return med if med > 0 else 1.0


@dataclass(frozen=True)
class MMDResult:
    mmd2: float  # biased (V-statistic) estimate of MMD^2 with the RBF kernel
    p_value: float  # permutation p-value, (1 + #{perm >= observed}) / (1 + permutations)
    bandwidth: float  # the reference's median squared distance; kernel k(x, y) = exp(-|x - y|^2 / bandwidth)
    permutations: int
    witness_auc: float  # cross-fitted AUC of the kernel witness as a domain classifier


@dataclass(frozen=True)
class MMDDraws:
    """One test size's random draws against a reference, with the reference-only sums they
    need. They depend on (current size, permutations, folds, seed) alone, so the many
    equal-sized windows of an over-time view share them instead of recomputing
    reference-sized products."""

    members: np.ndarray  # (N, B + 1) bool: a point is in the smaller side; column 0 the observed split
    within_reference: np.ndarray  # (B + 1,) float64: K_rr summed over each column's reference members' pairs
    fold: np.ndarray  # (N,) the witness fold of each point
    reference_by_fold: np.ndarray  # (n, F) float64: K_rr summed over each fold's reference points


@dataclass(frozen=True, eq=False)
class MMDReference:
    """A reference sample made ready for many MMD tests: the bandwidth (median heuristic
    over the reference alone, as alibi-detect's ``configure_kernel_from_x_ref``), its own
    kernel block and row sums, and the draws of recent test sizes. A test then computes
    only the current window's kernel rows, so many small windows against one reference
    cost little."""

    x: np.ndarray  # (n, d) float64
    squared_norms: np.ndarray  # (1, n)
    bandwidth: float
    k: np.ndarray  # (n, n) float32 kernel block
    row_sums: np.ndarray  # (n,) float64
    _draws: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    DRAWS_KEPT = 32  # test sizes whose draws are kept (a daily over-time view has about 30; ~0.3 MB each)

    def kernel_to(self, y: np.ndarray) -> np.ndarray:
        """(m, n) float32 kernel between the rows of ``y`` and the reference points."""
        return self._kernel(squared_distances(y, self.x, self.squared_norms))

    def kernel_within(self, y: np.ndarray) -> np.ndarray:
        """(m, m) float32 kernel between the rows of ``y``, with this reference's bandwidth."""
        return self._kernel(squared_distances(y, y))

    def _kernel(self, d2: np.ndarray) -> np.ndarray:
        return np.exp(-d2 / self.bandwidth).astype(np.float32)

    def draws(self, m: int, permutations: int, folds: int, seed: int) -> MMDDraws:
        """The permutations and folds of a test of ``m`` current points (drawn from
        ``default_rng(seed)``: the same draws for the same size, cached or not)."""
        key = (m, permutations, folds, seed)
        with self._lock:
            if key in self._draws:
                self._draws[key] = self._draws.pop(key)  # most recently used last
                return self._draws[key]
        n = len(self.x)
        rng = np.random.default_rng(seed)
        s = min(n, m)
        observed = np.arange(s) if n <= m else np.arange(n, n + m)
        sides = np.vstack([observed, random_subsets(rng, n + m, s, permutations)])  # (B + 1, s)
        members = np.zeros((n + m, permutations + 1), bool)
        members[sides.T, np.arange(permutations + 1)] = True
        fold = rng.permutation(np.arange(n + m) % folds)
        on_fold = (fold[:n, None] == np.arange(folds)[None, :]).astype(np.float32)
        within = _within_reference(self.k, sides, members[:n])
        made = MMDDraws(members, within, fold, (self.k @ on_fold).astype(np.float64))
        with self._lock:
            self._draws[key] = made
            while len(self._draws) > self.DRAWS_KEPT:
                self._draws.pop(next(iter(self._draws)))
        return made


def mmd_reference(x: np.ndarray, seed: int = 0) -> MMDReference:
    """``x`` (the reference sample) made ready for ``mmd_test``."""
    x = np.asarray(x, np.float64)
    norms = (x * x).sum(axis=1)[None, :]
    d2 = squared_distances(x, x, norms)
    bandwidth = median_bandwidth(d2, np.random.default_rng(seed))
    k = np.exp(-d2 / bandwidth).astype(np.float32)
    return MMDReference(x, norms, bandwidth, k, k.sum(axis=1, dtype=np.float64))


def squared_distances(a: np.ndarray, b: np.ndarray, b_norms: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (float64), as
    scikit-learn's ``euclidean_distances(squared=True)`` computes them for float64 input
    (|a|^2 + |b|^2 - 2 a.b, clipped at 0, a zero diagonal when ``b is a``), without its
    input checks: they cost more than the product for a day's 40 embeddings."""
    a_norms = (a * a).sum(axis=1)[:, None]
    if b_norms is None:
        b_norms = a_norms.T if b is a else (b * b).sum(axis=1)[None, :]
    d2 = a_norms + b_norms - 2 * (a @ b.T)
    np.maximum(d2, 0, out=d2)
    if b is a:
        np.fill_diagonal(d2, 0)
    return d2


def mmd_permutation(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0,
                    folds: int = 5) -> MMDResult:
    """MMD two-sample test of ``x`` (the reference) against ``y``; see ``mmd_test``."""
    return mmd_test(mmd_reference(x, seed), y, permutations, seed, folds)


def mmd_test(reference: MMDReference, y: np.ndarray, permutations: int = 200, seed: int = 0,
             folds: int = 5) -> MMDResult:
    """MMD permutation test against a prepared reference.

    A permutation is a random choice of which s points form the smaller side S; its biased
    statistic needs only the kernel sum within S: with the pooled kernel's row sums r and
    total T, the larger side's sum is T - 2 r[S] + K[S,S] and the cross sum r[S] - K[S,S].
    K[S,S] splits by where S's members come from: reference pairs (``MMDDraws``, shared by
    every window of this size), reference-current pairs and current pairs, so a test costs
    O(n m B), never the (N x N) kernel. The effect size is the witness function's (mean
    kernel to x minus mean kernel to y, fitted on the other folds) ROC AUC as a domain
    classifier, from the same blocks."""
    y = np.asarray(y, np.float64)
    n, m = len(reference.x), len(y)
    draws = reference.draws(m, permutations, folds, seed)
    cross, current = reference.kernel_to(y), reference.kernel_within(y)  # (m, n), (m, m)
    # Each pooled point's kernel sums to the reference and to the current window.
    to_x = np.r_[reference.row_sums, cross.sum(axis=1, dtype=np.float64)]
    to_y = np.r_[cross.sum(axis=0, dtype=np.float64), current.sum(axis=1, dtype=np.float64)]
    rows = to_x + to_y
    members = draws.members.astype(np.float32)
    on_reference, on_current = members[:n], members[n:]
    within_small = (draws.within_reference + 2 * _column_quadratic_forms(cross.T, on_reference, on_current)
                    + _column_quadratic_forms(current, on_current, on_current))
    rows_small = rows @ members
    s, big = min(n, m), max(n, m)
    within_big = rows.sum() - 2 * rows_small + within_small
    values = within_small / s ** 2 + within_big / big ** 2 - 2 * (rows_small - within_small) / (n * m)
    observed, null = float(values[0]), values[1:]
    p = (1.0 + np.count_nonzero(null >= observed - 1e-12)) / (1.0 + permutations)
    return MMDResult(observed, float(p), reference.bandwidth, permutations,
                     _witness_auc(draws, cross, current, to_x, to_y, folds))


def _column_quadratic_forms(k: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left[:, j]' k right[:, j]`` for every column j, in float64."""
    return np.einsum("ij,ij->j", left, (k @ right).astype(np.float64), dtype=np.float64)


# A side of at most n / GATHER_BELOW reference points has its pairs gathered one by one;
# a larger one goes through one (n x n) @ (n x B) product (the same sums).
GATHER_BELOW = 8


def _within_reference(k: np.ndarray, sides: np.ndarray, members: np.ndarray) -> np.ndarray:
    """For each row of ``sides`` (indices into the pooled sample; ``members`` the same as a
    (n, B + 1) mask over the reference points), ``k`` summed over the pairs of its members
    that are reference points (index < n = len(k)), in float64."""
    n = len(k)
    s = sides.shape[1]
    if s * GATHER_BELOW <= n:
        on = sides < n
        at = np.where(on, sides, 0)
        pairs = k.ravel().take(at[:, :, None] * n + at[:, None, :])
        return (pairs * (on[:, :, None] & on[:, None, :])).sum(axis=(1, 2), dtype=np.float64)
    on_reference = members.astype(np.float32)
    return _column_quadratic_forms(k, on_reference, on_reference)


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


def _witness_auc(draws: MMDDraws, cross: np.ndarray, current: np.ndarray, to_x: np.ndarray, to_y: np.ndarray,
                 folds: int) -> float:
    """Cross-fitted kernel-witness classifier (a Parzen-window domain classifier): each
    point is scored by the witness built from the points outside its fold, the mean kernel
    to the reference's minus to the current window's (``to_x``, ``to_y``: each pooled
    point's kernel sums to all of either)."""
    n = cross.shape[1]
    on_fold = (draws.fold[:, None] == np.arange(folds)[None, :])  # (N, F)
    x_out = n - on_fold[:n].sum(axis=0)  # reference points outside each fold
    y_out = len(current) - on_fold[n:].sum(axis=0)
    in_x = np.vstack([draws.reference_by_fold, cross @ on_fold[:n].astype(np.float32)])  # sums to x in fold f
    in_y = np.vstack([cross.T @ on_fold[n:].astype(np.float32), current @ on_fold[n:].astype(np.float32)])
    witness = (to_x[:, None] - in_x) / x_out - (to_y[:, None] - in_y) / y_out  # (N, F), outside each fold
    scores = witness[np.arange(len(draws.fold)), draws.fold]  # high = looks like x, the reference
    side = np.r_[np.ones(n, bool), np.zeros(len(current), bool)]
    return roc_auc(~side, -scores)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC through the Mann-Whitney identity on average ranks: the same number as
    scikit-learn's ``roc_auc_score`` (ties count one half), without its input checks,
    which cost more than the ranking at these sizes."""
    ranks = stats.rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
