"""Drift detectors over predictions DataFrames: fit on a reference window, test a current one.

Four signals, each a detector with ``fit(reference)`` then ``test(current) -> DriftResult``
(test that decides / effect size that sets severity / materiality floor):

- food: chi-squared homogeneity with rare classes pooled (expected counts >= 5) plus a
  two-proportion z-test per food, Holm together / PSI (Jensen-Shannon distance beside) /
  JS distance >= 0.05.
- confidence: two-sample Kolmogorov-Smirnov / KS D (Wasserstein beside) / D >= 0.05.
- image: KS per property (brightness, contrast, saturation, sharpness, size, aspect),
  Holm across them / largest KS D among those that drifted / D >= 0.05.
- embedding: MMD with an RBF kernel (median-heuristic bandwidth) and a permutation p-value,
  each window capped at ``sample_cap`` (default 1,000) random embeddings / AUC of the
  cross-fitted kernel witness as a domain classifier / AUC >= 0.53.

A signal drifts when its p-value is at most ``alpha`` (default 0.05) **and** its effect
reaches the materiality floor: with 100,000 predictions a window every test rejects for
differences nobody should act on, while at a few hundred predictions the floors never bind.

``drift_report`` runs all four and corrects across them with Holm again (a signal's
p-value is already Holm-adjusted within its own family, so the report's family-wise error
rate is at most ``alpha``); it names the signals that drifted, a severity, and what to do.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from nutrilearn.answers import percent
from nutrilearn.monitoring import drift_tests as dt
from nutrilearn.monitoring.windows import usable

ALPHA = 0.05
SIGNALS = ("food", "confidence", "image", "embedding")
IMAGE_PROPERTIES = ("brightness", "contrast", "saturation", "sharpness", "size", "aspect")
SEVERITIES = ("none", "low", "medium", "high")
MIN_SAMPLES = 20  # below this a window is too small to test; the result says so
SAMPLE_CAP = 1000  # embeddings per window entering MMD and the domain classifier
PERMUTATIONS = 200  # p-values down to 1/201, below alpha / 4 signals


@dataclass(frozen=True)
class Check:
    """One statistical test inside a detector (a detector may run several)."""

    feature: str
    test: str
    statistic: float
    p_value: float
    p_adjusted: float  # within the detector's family (Holm); equals p_value for a single test
    effect: float
    effect_name: str
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """What a detector found: the test, its p-value against the threshold, an effect size
    against its materiality floor, and the verdict."""

    signal: str
    method: str
    statistic: float
    p_value: float  # the signal's p-value (family-adjusted when the detector runs several tests)
    threshold: float  # alpha the p-value is compared with
    distance: float  # the effect size that sets severity
    distance_name: str
    min_distance: float  # materiality floor
    drifted: bool
    severity: str  # none | low | medium | high
    n_reference: int
    n_current: int
    checks: tuple[Check, ...] = ()
    details: dict = field(default_factory=dict)
    note: str = ""  # e.g. why a signal could not be tested

    @property
    def verdict(self) -> str:
        if self.note and math.isnan(self.p_value):
            return "not tested"
        return "drift" if self.drifted else "no drift"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["verdict"] = self.verdict
        return jsonable(out)


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _band(value: float, low: float, medium: float, high: float) -> str:
    """Severity of an effect: below ``medium`` low, below ``high`` medium, else high."""
    if not np.isfinite(value) or value < low:
        return "low"
    return "low" if value < medium else "medium" if value < high else "high"


# Effect-size bands (value at which severity becomes low/medium/high once a signal drifts).
SEVERITY_BANDS = {
    "food": (0.0, 0.1, 0.25),  # PSI: the industry's 0.1 / 0.25 convention
    "confidence": (0.0, 0.1, 0.2),  # KS D
    "image": (0.0, 0.1, 0.2),  # KS D
    "embedding": (0.5, 0.7, 0.85),  # domain-classifier AUC
}


@dataclass(frozen=True)
class ChunkOutcome:
    """A detector's result on one chunk before alpha: its family's Holm-adjusted p-values
    and their effects (empty when the chunk was too small to test), and for food the PSI its
    severity reads on. Any alpha's verdict follows from these (``decide``), so a change of
    alpha reruns no test."""

    p_adjusted: np.ndarray
    effects: np.ndarray
    severity_effect: float = float("nan")


UNTESTED = ChunkOutcome(np.empty(0), np.empty(0))


def decide(signal: str, min_distance: float, outcome: ChunkOutcome, alpha: float) -> tuple[float, float, bool, str]:
    """(p-value, distance, drifted, severity) of a detector's ``outcome`` at ``alpha``, as its
    ``test`` gives them: drifted when some test's adjusted p is at most alpha and its effect
    reaches the floor; the distance is the largest such effect (else the largest effect)."""
    if not outcome.p_adjusted.size:
        return float("nan"), float("nan"), False, "none"
    flags = (outcome.p_adjusted <= alpha) & (outcome.effects >= min_distance)
    drifted = bool(flags.any())
    distance = float(outcome.effects[flags].max() if drifted else outcome.effects.max())
    scale = outcome.severity_effect if np.isfinite(outcome.severity_effect) else distance
    return (float(outcome.p_adjusted.min()), distance, drifted,
            _band(scale, *SEVERITY_BANDS[signal]) if drifted else "none")


class Detector:
    """Fit on a reference predictions DataFrame, then test current ones against it."""

    signal = ""
    method = ""
    distance_name = ""
    min_distance = 0.0

    def __init__(self, alpha: float = ALPHA, min_distance: float | None = None):
        self.alpha = alpha
        if min_distance is not None:
            self.min_distance = min_distance
        self.n_reference = 0

    def values(self, frame: pd.DataFrame, reference: bool):
        """What the detector compares, taken from a predictions frame."""
        raise NotImplementedError

    def compare(self, values) -> DriftResult:
        """Test the current window's values against the fitted reference."""
        raise NotImplementedError

    def fit(self, reference: pd.DataFrame) -> "Detector":
        self.reference_ = self.values(reference, reference=True)
        self.n_reference = len(self.reference_)
        return self

    def test(self, current: pd.DataFrame) -> DriftResult:
        values = self.values(current, reference=False)
        if min(self.n_reference, len(values)) < MIN_SAMPLES:
            return self._untested(len(values), f"needs at least {MIN_SAMPLES} predictions in each window")
        return self.compare(values)

    def chunk_outcomes(self, data: pd.DataFrame, spans: list) -> list[ChunkOutcome]:
        """The alpha-free outcome of each chunk of ``data`` (usable rows; ``spans`` from
        ``windows.chunk_spans``), equal to what ``test`` on that chunk decides from."""
        raise NotImplementedError

    def _result(self, statistic, p_value, distance, n_current, checks=(), details=None, note="") -> DriftResult:
        drifted = bool(p_value <= self.alpha and distance >= self.min_distance) if np.isfinite(p_value) else False
        severity = _band(distance, *SEVERITY_BANDS[self.signal]) if drifted else "none"
        return DriftResult(self.signal, self.method, float(statistic), float(p_value), self.alpha, float(distance),
                           self.distance_name, self.min_distance, drifted, severity, self.n_reference, n_current,
                           tuple(checks), details or {}, note)

    def _untested(self, n_current: int, note: str) -> DriftResult:
        return self._result(np.nan, np.nan, np.nan, n_current, note=note)


class FoodDistributionDetector(Detector):
    """Predicted food labels: an omnibus chi-squared (rare classes pooled) and one
    two-proportion z-test per food, Holm-corrected together; Jensen-Shannon and PSI."""

    signal = "food"
    method = "chi-squared homogeneity (expected counts >= 5, rare classes pooled) + per-food z-tests, Holm"
    distance_name = "js_distance"
    min_distance = 0.05

    def values(self, frame: pd.DataFrame, reference: bool) -> pd.Series:
        return usable(frame, ordered=False)["label"].dropna().astype(str)

    def compare(self, labels: pd.Series) -> DriftResult:
        table = dt.count_table(self.reference_, labels)
        chi = dt.pooled_chi2(table)
        js, psi = dt.js_distance(table), dt.psi(table)
        z, p_food = dt.share_z_tests(chi.table)
        p_all = np.r_[chi.p_value, p_food]
        adjusted = dt.holm(p_all)
        flags = (adjusted <= self.alpha) & (js >= self.min_distance)
        checks = [Check("label mix", "chi2", chi.statistic, chi.p_value, adjusted[0], js, "js_distance",
                        bool(flags[0]))]
        pooled_shares = dt.shares(chi.table)
        checks += [Check(str(name), "two-proportion z", z[i], p_food[i], adjusted[i + 1],
                         float(pooled_shares["current"].iloc[i] - pooled_shares["reference"].iloc[i]),
                         "share_change", bool(flags[i + 1])) for i, name in enumerate(chi.table.index)]
        share = dt.shares(table).fillna(0)
        change = (share["current"] - share["reference"]).sort_values(key=np.abs, ascending=False)
        details = {
            "dof": chi.dof,
            "chi2_p_value": chi.p_value,
            "pooled_classes": list(chi.pooled),
            "psi": psi,
            "js_distance": js,
            "largest_changes": [
                {"label": k, "reference_share": float(share.at[k, "reference"]),
                 "current_share": float(share.at[k, "current"])}
                for k in change.index[:5]
            ],
        }
        result = self._result(chi.statistic, adjusted.min(), js, len(labels), checks, details)
        # Severity of a label shift reads on the PSI scale (the convention people know).
        return replace(result, severity=_band(psi, *SEVERITY_BANDS["food"]) if result.drifted else "none")

    def chunk_outcomes(self, data: pd.DataFrame, spans: list) -> list[ChunkOutcome]:
        """Label counts per chunk from one coding of every label (``dt.label_mix``'s arrays)."""
        present = data["label"].notna().to_numpy()
        labels = data["label"][present].astype(str).to_numpy(str)
        # one code per label, in name order (count_table's sorted index)
        names, codes = np.unique(np.r_[self.reference_.to_numpy(str), labels], return_inverse=True)
        ref_counts = np.bincount(codes[:self.n_reference], minlength=len(names))
        at = np.full(len(data), -1)
        at[present] = codes[self.n_reference:]
        out = []
        for _, _, rows in spans:
            mine = at[rows]
            mine = mine[mine >= 0]
            if min(self.n_reference, len(mine)) < MIN_SAMPLES:
                out.append(UNTESTED)
                continue
            p, js, psi = dt.label_mix(ref_counts, np.bincount(mine, minlength=len(names)))
            out.append(ChunkOutcome(np.array([p]), np.array([js]), psi))
        return out


class ConfidenceDetector(Detector):
    """Top-1 confidence: Kolmogorov-Smirnov test, Wasserstein distance beside it."""

    signal = "confidence"
    method = "two-sample Kolmogorov-Smirnov"
    distance_name = "ks_d"
    min_distance = 0.05

    def values(self, frame: pd.DataFrame, reference: bool) -> np.ndarray:
        values = usable(frame, ordered=False)["confidence"].dropna().to_numpy(float)
        return np.sort(values) if reference else values  # sorted once, for every test to come

    def compare(self, values: np.ndarray) -> DriftResult:
        d, p, wasserstein = dt.ks(self.reference_, values, wasserstein=True)
        details = {
            "wasserstein": wasserstein,
            "reference_mean": float(self.reference_.mean()),
            "current_mean": float(values.mean()),
            "reference_median": float(np.median(self.reference_)),
            "current_median": float(np.median(values)),
        }
        result = self._result(d, p, d, len(values), details=details)
        check = Check("confidence", "ks", d, p, p, d, "ks_d", result.drifted)
        return replace(result, checks=(check,))

    def chunk_outcomes(self, data: pd.DataFrame, spans: list) -> list[ChunkOutcome]:
        values = data["confidence"].to_numpy(float)
        out = []
        for _, _, rows in spans:
            mine = values[rows]
            mine = mine[~np.isnan(mine)]
            if min(self.n_reference, len(mine)) < MIN_SAMPLES:
                out.append(UNTESTED)
                continue
            d, p, _ = dt.ks(self.reference_, mine)
            out.append(ChunkOutcome(np.array([p]), np.array([d])))
        return out


def image_properties(frame: pd.DataFrame) -> pd.DataFrame:
    """The image-property columns the image detector tests (``size`` = megapixels)."""
    data = usable(frame, ordered=False)
    out = data[["brightness", "contrast", "saturation", "sharpness", "aspect"]].astype(float)
    out = out.assign(size=data["image_width"].astype(float) * data["image_height"].astype(float) / 1e6)
    return out[list(IMAGE_PROPERTIES)]


class ImagePropertyDetector(Detector):
    """One KS test per image property; Holm's correction across the properties."""

    signal = "image"
    method = "KS per property, Holm-corrected across " + ", ".join(IMAGE_PROPERTIES)
    distance_name = "max_ks_d"
    min_distance = 0.05

    def __init__(self, alpha: float = ALPHA, min_distance: float | None = None, properties=IMAGE_PROPERTIES):
        super().__init__(alpha, min_distance)
        self.properties = tuple(properties)

    def values(self, frame: pd.DataFrame, reference: bool) -> pd.DataFrame:
        values = image_properties(frame)[list(self.properties)]
        if reference:  # sorted once, for every test to come
            self.sorted_ = {p: np.sort(values[p].dropna().to_numpy()) for p in self.properties}
            self.medians_ = values.median()
        return values

    def compare(self, values: pd.DataFrame) -> DriftResult:
        raw = [dt.ks(self.sorted_[p], values[p].dropna().to_numpy()) for p in self.properties]
        d = np.array([r[0] for r in raw])
        p = np.array([r[1] for r in raw])
        adjusted = dt.holm(p)
        flags = (adjusted <= self.alpha) & (d >= self.min_distance)
        checks = tuple(Check(name, "ks", d[i], p[i], adjusted[i], d[i], "ks_d", bool(flags[i]))
                       for i, name in enumerate(self.properties))
        ref_med, cur_med = self.medians_, values.median()
        details = {"medians": {name: {"reference": float(ref_med[name]), "current": float(cur_med[name])}
                               for name in self.properties}}
        worst = int(np.argmin(adjusted))
        distance = float(d[flags].max()) if flags.any() else float(d.max())
        result = self._result(d[worst], adjusted.min(), distance, len(values), checks, details)
        return replace(result, drifted=bool(flags.any()) and result.p_value <= self.alpha,
                       severity=_band(distance, *SEVERITY_BANDS["image"]) if flags.any() else "none")

    def chunk_outcomes(self, data: pd.DataFrame, spans: list) -> list[ChunkOutcome]:
        """The properties computed once for all chunks; Holm across them per chunk, as ``compare``."""
        table = image_properties(data)
        columns = [table[p].to_numpy(float) for p in self.properties]
        out = []
        for _, _, rows in spans:
            if min(self.n_reference, len(rows)) < MIN_SAMPLES:
                out.append(UNTESTED)
                continue
            raw = [dt.ks(self.sorted_[p], col[rows][~np.isnan(col[rows])]) for p, col in zip(self.properties, columns)]
            out.append(ChunkOutcome(dt.holm([r[1] for r in raw]), np.array([r[0] for r in raw])))
        return out


def embedded_rows(frame: pd.DataFrame, cap: int | None = None, seed: int = 0, filtered: bool = False) -> pd.DataFrame:
    """The usable rows with an embedding, at most ``cap`` drawn at random (seeded), in their
    order; ``filtered``: ``frame`` holds usable rows only."""
    rows = frame if filtered else usable(frame, ordered=False)
    return rows.iloc[embedded_positions(rows["embedding"].notna().to_numpy(), cap, seed)]


def embedded_positions(has: np.ndarray, cap: int | None = None, seed: int = 0) -> np.ndarray:
    """Positions where ``has`` (a row has an embedding), at most ``cap`` of them drawn at
    random (seeded), in order: the one draw of a window's embeddings."""
    positions = np.flatnonzero(has)
    if cap is not None and len(positions) > cap:
        positions = positions[np.sort(np.random.default_rng(seed).choice(len(positions), size=cap, replace=False))]
    return positions


def embeddings(frame: pd.DataFrame, cap: int | None = None, seed: int = 0, filtered: bool = False) -> np.ndarray:
    """Compact embeddings of ``embedded_rows`` as (N, 128) float32 (decoding only the rows drawn)."""
    from nutrilearn.vision.embedding import from_bytes

    return from_bytes(embedded_rows(frame, cap, seed, filtered)["embedding"].tolist())  # drops empty blobs


class EmbeddingDetector(Detector):
    """MMD permutation test on the compact embeddings; the AUC of the kernel witness as a
    cross-fitted domain classifier is the effect size. Each window is capped at
    ``sample_cap`` random embeddings, which bounds the cost (a (2 cap)^2 kernel matrix
    times ``permutations`` weight vectors) and, with it, the power."""

    signal = "embedding"
    method = "MMD, RBF kernel with the reference's median-heuristic bandwidth, permutation test"
    distance_name = "domain_auc"
    min_distance = 0.53

    def __init__(self, alpha: float = ALPHA, min_distance: float | None = None, sample_cap: int = SAMPLE_CAP,
                 permutations: int = PERMUTATIONS, seed: int = 0):
        super().__init__(alpha, min_distance)
        self.sample_cap, self.permutations, self.seed = sample_cap, permutations, seed

    def values(self, frame: pd.DataFrame, reference: bool) -> np.ndarray:
        return embeddings(frame, self.sample_cap, self.seed + (not reference))

    def fit(self, reference: pd.DataFrame) -> "EmbeddingDetector":
        super().fit(reference)
        self.mmd_reference_ = dt.mmd_reference(self.reference_, self.seed) if self.n_reference else None
        return self

    def compare(self, values: np.ndarray) -> DriftResult:
        mmd = dt.mmd_test(self.mmd_reference_, values, self.permutations, self.seed)
        auc = distance = mmd.witness_auc
        details = {"mmd2": mmd.mmd2, "bandwidth": mmd.bandwidth, "permutations": mmd.permutations,
                   "sample_cap": self.sample_cap, "domain_auc": auc}
        result = self._result(mmd.mmd2, mmd.p_value, distance, len(values), details=details)
        check = Check("embedding", "mmd", mmd.mmd2, mmd.p_value, mmd.p_value, distance, self.distance_name,
                      result.drifted)
        return replace(result, checks=(check,))

    def chunk_outcomes(self, data: pd.DataFrame, spans: list) -> list[ChunkOutcome]:
        from nutrilearn.vision.blas import cpu_threads, one_blas_thread
        from nutrilearn.vision.embedding import from_bytes

        blobs = data["embedding"].to_numpy(object)
        has = data["embedding"].notna().to_numpy()
        every_row = np.arange(len(data))
        samples: list[np.ndarray | None] = []  # each chunk's embeddings; None: untested
        for _, _, rows in spans:
            at = every_row[rows]
            values = None
            if min(self.n_reference, int(has[at].sum())) >= MIN_SAMPLES:  # fewer blobs, fewer embeddings
                # what ``embeddings`` draws from this chunk's rows, without a frame per chunk
                values = from_bytes(blobs[at[embedded_positions(has[at], self.sample_cap, self.seed + 1)]])
            samples.append(values if values is not None and min(self.n_reference, len(values)) >= MIN_SAMPLES
                           else None)

        def outcome(values: np.ndarray | None) -> ChunkOutcome:
            if values is None:
                return UNTESTED
            mmd = dt.mmd_test(self.mmd_reference_, values, self.permutations, self.seed)
            return ChunkOutcome(np.array([mmd.p_value]), np.array([mmd.witness_auc]))

        # A test is numpy on small arrays of its own (the prepared reference is only read):
        # one per core, each on one BLAS thread (the same numbers; BLAS splitting these small
        # products across cores while the tests run side by side only made them wait).
        with one_blas_thread(), ThreadPoolExecutor(max_workers=cpu_threads()) as pool:
            return list(pool.map(outcome, samples))


def default_detectors(alpha: float = ALPHA, **embedding_options) -> list[Detector]:
    return [FoodDistributionDetector(alpha), ConfidenceDetector(alpha), ImagePropertyDetector(alpha),
            EmbeddingDetector(alpha, **embedding_options)]


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class DriftReport:
    """All signals for one reference/current pair, corrected across signals (Holm)."""

    results: tuple[DriftResult, ...]
    alpha: float
    reference: dict = field(default_factory=dict)  # window descriptions (spec, n, time span)
    current: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    correction: str = "holm"

    @property
    def drifted_signals(self) -> list[str]:
        return [r.signal for r in self.results if r.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_signals)

    @property
    def severity(self) -> str:
        return max((r.severity for r in self.results), key=SEVERITIES.index, default="none")

    @property
    def verdict(self) -> str:
        return "drift" if self.drifted else "no drift"

    def result(self, signal: str) -> DriftResult | None:
        return next((r for r in self.results if r.signal == signal), None)

    @property
    def model_versions(self) -> tuple[str, str]:
        """The versions that served the reference and the current window ("" when unknown)."""
        return str(self.reference.get("model_versions") or ""), str(self.current.get("model_versions") or "")

    @property
    def model_change(self) -> bool:
        """True when the two windows were served by different model versions: then food and
        confidence drift are the expected consequence of the change, not news about users."""
        before, after = self.model_versions
        return bool(before and after and before != after)

    @property
    def recommendation(self) -> str:
        return recommend(self)

    def to_frame(self) -> pd.DataFrame:
        """One row per signal: the per-signal table of the page and the CLI."""
        rows = [{"signal": r.signal, "verdict": r.verdict, "severity": r.severity, "method": r.method,
                 "statistic": r.statistic, "p_value": r.p_value, "threshold": r.threshold,
                 "distance_name": r.distance_name, "distance": r.distance, "min_distance": r.min_distance,
                 "n_reference": r.n_reference, "n_current": r.n_current,
                 "note": self._note(r)} for r in self.results]
        return pd.DataFrame(rows)

    def _note(self, r: DriftResult) -> str:
        if self.model_change and r.drifted and r.signal in MODEL_OUTPUT_SIGNALS:
            before, after = self.model_versions
            expected = f"expected: the model changed (version {before} -> {after})"
            return f"{expected}; {r.note}" if r.note else expected
        return r.note

    def checks_frame(self) -> pd.DataFrame:
        """One row per individual test (image properties appear one by one)."""
        rows = [{"signal": r.signal, **asdict(c)} for r in self.results for c in r.checks]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return jsonable({
            "verdict": self.verdict, "drifted": self.drifted, "severity": self.severity,
            "drifted_signals": self.drifted_signals, "recommendation": self.recommendation,
            "model_change": self.model_change,
            "expected_from_model_change": [r.signal for r in self.results
                                           if self.model_change and r.drifted and r.signal in MODEL_OUTPUT_SIGNALS],
            "alpha": self.alpha, "correction": f"{self.correction} across signals; holm across image properties",
            "reference": self.reference, "current": self.current, "elapsed_s": self.elapsed_s,
            "signals": [r.to_dict() for r in self.results],
        })


class DriftMonitor:
    """Fit every detector once on a reference, then report on as many current windows
    (or chunks of one) as needed."""

    def __init__(self, alpha: float = ALPHA, detectors: list[Detector] | None = None, **embedding_options):
        self.alpha = alpha
        self.detectors = detectors if detectors is not None else default_detectors(alpha, **embedding_options)

    def fit(self, reference: pd.DataFrame) -> "DriftMonitor":
        for detector in self.detectors:
            detector.fit(reference)
        return self

    def report(self, current: pd.DataFrame, reference_info: dict | None = None,
               current_info: dict | None = None) -> DriftReport:
        t0 = time.perf_counter()
        raw = [d.test(current) for d in self.detectors]
        return DriftReport(correct_across_signals(raw, self.alpha), self.alpha, reference_info or {},
                           current_info or {}, time.perf_counter() - t0)

    def over_time(self, frame: pd.DataFrame, every: str | int) -> pd.DataFrame:
        """The same report per chunk of ``frame`` (see ``windows.chunks``): one row per
        chunk and signal, with the threshold each p-value is compared with."""
        if any(type(d).chunk_outcomes is Detector.chunk_outcomes for d in self.detectors):
            return self._over_time_by_report(frame, every)  # a detector of its own: the whole report
        return self.chunk_tests(frame, every).at(self.alpha)

    def _over_time_by_report(self, frame: pd.DataFrame, every: str | int) -> pd.DataFrame:
        from nutrilearn.monitoring.windows import chunks

        rows = []
        for start, end, part in chunks(frame, every):
            for r in self.report(part).results:
                rows.append({"start": start, "end": end, "n": len(part), "signal": r.signal, "p_value": r.p_value,
                             "threshold": r.threshold, "distance": r.distance, "distance_name": r.distance_name,
                             "min_distance": r.min_distance, "drifted": r.drifted, "severity": r.severity})
        return pd.DataFrame(rows, columns=list(ChunkTests.COLUMNS))

    def chunk_tests(self, frame: pd.DataFrame, every: str | int) -> "ChunkTests":
        """Every chunk of ``frame`` tested, before alpha: ``.at(alpha)`` is ``over_time``.
        Each detector prepares its columns once for all chunks (not a usable frame per
        chunk and detector), so the page can change alpha without testing again."""
        from nutrilearn.monitoring.windows import chunk_spans

        data, spans = chunk_spans(frame, every)
        outcomes = [d.chunk_outcomes(data, spans) for d in self.detectors]
        return ChunkTests([(start, end, len(rows)) for start, end, rows in spans],
                          [list(chunk) for chunk in zip(*outcomes)] if spans else [],
                          [(d.signal, d.distance_name, d.min_distance) for d in self.detectors])


@dataclass(frozen=True)
class ChunkTests:
    """Chunks over time tested against a reference, before alpha (see ``DriftMonitor.chunk_tests``)."""

    spans: list  # (start, end, n) per chunk
    outcomes: list  # per chunk, one ChunkOutcome per detector
    signals: list  # (signal, distance_name, min_distance) per detector

    COLUMNS = ("start", "end", "n", "signal", "p_value", "threshold", "distance", "distance_name", "min_distance",
               "drifted", "severity")

    def at(self, alpha: float) -> pd.DataFrame:
        """``DriftMonitor.over_time`` at ``alpha``: each detector's verdict, then Holm
        across the signals tested in that chunk (``holm_across_signals``, as the report)."""
        rows = []
        for (start, end, n), chunk in zip(self.spans, self.outcomes):
            decided = [decide(signal, floor, o, alpha) for (signal, _, floor), o in zip(self.signals, chunk)]
            across = holm_across_signals([(p, drifted, severity) for p, _, drifted, severity in decided], alpha)
            for (signal, name, floor), (_, distance, _, _), (p, drifted, severity) in zip(self.signals, decided, across):
                rows.append({"start": start, "end": end, "n": n, "signal": signal, "p_value": p,
                             "threshold": alpha, "distance": distance, "distance_name": name,
                             "min_distance": floor, "drifted": drifted, "severity": severity})
        return pd.DataFrame(rows, columns=list(self.COLUMNS))


def holm_across_signals(verdicts: list[tuple[float, bool, str]], alpha: float) -> list[tuple[float, bool, str]]:
    """``(p, drifted, severity)`` per signal -> the same after Holm across the signals that
    could be tested (finite p): a signal keeps its drift verdict only if its adjusted p-value
    is still at most ``alpha``; untested signals are returned as given."""
    tested = [i for i, (p, _, _) in enumerate(verdicts) if np.isfinite(p)]
    out = list(verdicts)
    for i, p in zip(tested, dt.holm([verdicts[i][0] for i in tested])):
        _, drifted, severity = verdicts[i]
        drifted = drifted and p <= alpha
        out[i] = (float(p), drifted, severity if drifted else "none")
    return out


def correct_across_signals(results: list[DriftResult], alpha: float) -> tuple[DriftResult, ...]:
    """``holm_across_signals`` on a report's results (the adjusted p-value replaces the
    signal's own, kept in its details)."""
    across = holm_across_signals([(r.p_value, r.drifted, r.severity) for r in results], alpha)
    out = list(results)
    for i, (r, (p, drifted, severity)) in enumerate(zip(results, across)):
        if np.isfinite(r.p_value):
            out[i] = replace(r, p_value=p, threshold=alpha, drifted=drifted, severity=severity,
                             details={**r.details, "p_value_within_signal": r.p_value})
    return tuple(out)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, alpha: float = ALPHA,
                 reference_info: dict | None = None, current_info: dict | None = None,
                 **embedding_options) -> DriftReport:
    """Fit all four detectors on ``reference`` and test ``current``: the one-call API."""
    return DriftMonitor(alpha, **embedding_options).fit(reference).report(current, reference_info, current_info)


# --------------------------------------------------------------------------- what to do


# Signals that describe the model's answers (not the photos): a version change moves them.
MODEL_OUTPUT_SIGNALS = ("food", "confidence")


def recommend(report: DriftReport) -> str:
    """A concrete next step for the signals that drifted (most severe first)."""
    untested = [f"{r.signal} ({r.note})" for r in report.results if r.verdict == "not tested"]
    tail = f" Not tested: {'; '.join(untested)}." if untested else ""
    if not report.drifted:
        sizes = ", ".join(f"{r.signal} {r.n_reference} vs {r.n_current}" for r in report.results[:1])
        return (f"No drift at alpha={report.alpha:g} (Holm across signals; {sizes} predictions): keep the "
                f"current version and reference, and check again on the next window.{tail}")
    drifted = sorted((r for r in report.results if r.drifted), key=lambda r: -SEVERITIES.index(r.severity))
    names = {r.signal for r in drifted}
    if report.model_change:
        before, after = report.model_versions
        expected = [r.signal for r in drifted if r.signal in MODEL_OUTPUT_SIGNALS]
        others = [r for r in drifted if r.signal not in MODEL_OUTPUT_SIGNALS]
        lead = (f"The model changed: the reference was served by version {before}, the current window by version "
                f"{after}. Compare like with like: take the reference since the current champion "
                "(`--reference champion`, or \"Since the current champion\" on the page).")
        if expected:
            lead += (f" Drift in {' and '.join(expected)} is the expected consequence of the change (another "
                     "version names other foods with other confidence), not a change in what users photograph.")
        steps = [_ADVICE[r.signal](r, names) for r in others]
        if others:
            steps.insert(0, f"Beyond the model change: drift ({max((r.severity for r in others), key=SEVERITIES.index)}) "
                            f"in {', '.join(r.signal for r in others)}.")
        return " ".join([lead, *steps]) + tail
    steps = [_ADVICE[r.signal](r, names) for r in drifted]
    lead = f"Drift ({report.severity}) in {', '.join(r.signal for r in drifted)}."
    return " ".join([lead, *steps]) + tail


def _advice_food(r: DriftResult, drifted: set[str]) -> str:
    changes = [c for c in r.details.get("largest_changes", [])[:3]]
    moved = ", ".join(f"{c['label']} {percent(c['reference_share'])} -> {percent(c['current_share'])}" for c in changes)
    return (f"Users photograph a different mix of foods ({moved}; PSI {r.details.get('psi', float('nan')):.2f}). "
            "Check that these foods are in the model's vocabulary and the nutrition table; if the new mix is "
            "the new normal, take a recent window as the reference.")


def _advice_confidence(r: DriftResult, drifted: set[str]) -> str:
    before, after = r.details.get("reference_mean", np.nan), r.details.get("current_mean", np.nan)
    if after < before:
        return (f"The model is less sure of itself (mean confidence {percent(before)} -> {percent(after)}; expected "
                f"accuracy down about {100 * (before - after):.0f} points): collect feedback on recent photos, "
                "evaluate a challenger on them, and roll back if an earlier version scores better.")
    return (f"The model is surer than before (mean confidence {percent(before)} -> {percent(after)}): look for repeated "
            "or replayed photos before trusting it, and compare with realized accuracy from feedback.")


def _advice_image(r: DriftResult, drifted: set[str]) -> str:
    medians = r.details.get("medians", {})
    moved = [c for c in r.checks if c.drifted] or list(r.checks[:1])
    parts = []
    for c in sorted(moved, key=lambda c: -c.effect)[:3]:
        m = medians.get(c.feature, {})
        ref, cur = m.get("reference", np.nan), m.get("current", np.nan)
        rel = (cur - ref) / abs(ref) if ref else np.nan
        parts.append(f"{c.feature} median {ref:.3g} -> {cur:.3g} ({percent(rel, signed=True)})")
    return (f"Photos look different ({'; '.join(parts)}): check the capture and upload path (camera, "
            "lighting, app version, compression) before retraining; if the change is real, add such photos "
            "to the evaluation set.")


def _advice_embedding(r: DriftResult, drifted: set[str]) -> str:
    auc = r.details.get("domain_auc", np.nan)
    if "image" in drifted and r.severity != "high":
        return (f"The model's features moved too (a classifier tells the windows apart with AUC {auc:.2f}), "
                "most likely because of the photo change above: fix that first, then check again.")
    return (f"The photos are of a different kind than the reference (a classifier tells the windows apart "
            f"with AUC {auc:.2f}): label a sample of recent photos, evaluate the champion on them, and train "
            "or promote a challenger if accuracy has dropped.")


_ADVICE = {"food": _advice_food, "confidence": _advice_confidence, "image": _advice_image,
           "embedding": _advice_embedding}
