"""Drift drill-down: which kinds of photos grew or shrank between two windows.

The embedding signal (``drift.EmbeddingDetector``) says *whether* the photos changed; this
says *where*. Both windows' compact embeddings are clustered together (k-means, seeded),
and each cluster's share of the reference is compared with its share of the current
window: a cluster that went from 2% to 45% is the new kind of photo, with its most common
predicted foods and example request ids to look at (the pages show their thumbnails).

Same shape as the detectors: ``ClusterDrift(...).fit(reference).compare(current)``.

Why the preprocessing: the pooled features are ReLU6 averages, so every embedding shares a
large common direction ("a photo of food on a plate"). Centring on the two windows' mean
and normalising to unit length (spherical k-means) clusters what differs between photos
rather than how strongly they share it. Rows are ordered by their content first, so the
same photos give the same clusters whenever they were sent, and k-means keeps the best of
10 seeded starts.

Why ``k`` is small: food10's foods overlap in this space (k-means at k = 10 recovers them
with an adjusted Rand index of only ~0.2), so many clusters each hold a sliver of a new
food and no single one moves much. ``k`` is one cluster per 100 embeddings clustered,
between 4 and 12, unless the caller fixes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from nutrilearn.monitoring.windows import isin, usable

SAMPLE_CAP = 1000  # embeddings per window entering the clustering
MIN_K, MAX_K, PER_CLUSTER = 4, 12, 100
TOP_FOODS = 3
EXAMPLES = 8
MOVED = 0.05  # a cluster "moved" when its share changed by at least 5 points


def choose_k(n: int) -> int:
    """One cluster per ``PER_CLUSTER`` embeddings, clipped to [MIN_K, MAX_K] (and to n)."""
    return int(max(1, min(n, max(MIN_K, min(MAX_K, round(n / PER_CLUSTER))))))


@dataclass(frozen=True)
class ClusterShift:
    """One cluster of photos and how its share moved from the reference to the current window."""

    id: int
    reference_share: float
    current_share: float
    reference_count: int
    current_count: int
    top_foods: list[str]  # most common predicted labels in the cluster, most common first
    examples: list[str]  # request ids, current-window members first (nearest the centre first)
    members: list[str] = field(default_factory=list, repr=False)  # every request id clustered here

    @property
    def change(self) -> float:
        return self.current_share - self.reference_share

    @property
    def moved(self) -> bool:
        return abs(self.change) >= MOVED

    def to_dict(self) -> dict:
        """The drift JSON's ``clusters`` entry (members left out: they can be thousands)."""
        out = asdict(self)
        out.pop("members")
        out["share_change"] = self.change
        return out


@dataclass
class ClusterReport:
    """Clusters sorted by |share change|, largest first, and the 2-D map of the points."""

    clusters: list[ClusterShift]
    k: int
    n_reference: int
    n_current: int
    points: pd.DataFrame  # request_id, window, cluster, x, y, label (for the page's map)
    explained: tuple[float, float] = (0.0, 0.0)  # variance share of the map's two axes

    def moved(self) -> list[ClusterShift]:
        return [c for c in self.clusters if c.moved]

    def cluster_of(self) -> dict[str, int]:
        """request id -> cluster id, for every point clustered."""
        return dict(zip(self.points["request_id"], self.points["cluster"].astype(int)))

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.clusters]


def _rows(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """The window's usable rows with an embedding, at most ``cap`` drawn at random (seeded)."""
    rows = usable(frame, ordered=False)
    rows = rows[rows["embedding"].map(lambda b: bool(b) if isinstance(b, (bytes, bytearray)) else False)] \
        if "embedding" in rows and len(rows) else rows.iloc[:0]
    if len(rows) > cap:
        rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), size=cap, replace=False))]
    return rows[["request_id", "label", "embedding"]].reset_index(drop=True)


def _distinct(both: pd.DataFrame, order: np.ndarray, n: int) -> list[str]:
    """The first ``n`` request ids in ``order`` of distinct photos: the same photo sent twice
    has the same embedding, and showing it twice shows one photo less."""
    seen: set[bytes] = set()
    out: list[str] = []
    for i in order:
        blob = bytes(both["embedding"].iat[i])
        if blob not in seen:
            seen.add(blob)
            out.append(str(both["request_id"].iat[i]))
            if len(out) == n:
                break
    return out


def _space(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(clustering space, 2-D map, the map's explained variance): centred, unit length; the
    map is the first two principal directions of the centred embeddings."""
    from sklearn.decomposition import PCA

    centred = x - x.mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    pca = PCA(n_components=2, random_state=seed).fit(centred)
    ratio = pca.explained_variance_ratio_
    return centred / np.where(norms > 0, norms, 1.0), pca.transform(centred), (float(ratio[0]), float(ratio[1]))


class ClusterDrift:
    """Fit on a reference window, compare a current one: clusters ranked by share change."""

    def __init__(self, k: int | None = None, seed: int = 0, sample_cap: int = SAMPLE_CAP,
                 top_foods: int = TOP_FOODS, examples: int = EXAMPLES):
        self.k, self.seed, self.sample_cap = k, seed, sample_cap
        self.top_foods, self.examples = top_foods, examples

    def fit(self, reference: pd.DataFrame) -> "ClusterDrift":
        self.reference_ = _rows(reference, self.sample_cap, self.seed)
        return self

    def compare(self, current: pd.DataFrame) -> ClusterReport:
        from threadpoolctl import threadpool_limits

        from nutrilearn.vision.blas import one_blas_thread
        from nutrilearn.vision.embedding import from_bytes

        # A few thousand points: one thread is as fast, and never fights the app's other work
        # (OpenMP/BLAS threads spinning on a busy 2-core machine cost seconds here). BLAS goes
        # through the counted limit the prediction path and the drift tests share (a plain
        # limit here restored two threads under a prediction still running, or left one for
        # good); OpenMP (k-means) is limited nowhere else.
        with one_blas_thread(), threadpool_limits(limits=1, user_api="openmp"):
            return self._compare(current, from_bytes)

    def _compare(self, current: pd.DataFrame, from_bytes) -> ClusterReport:
        from sklearn.cluster import KMeans

        ref, cur = self.reference_, _rows(current, self.sample_cap, self.seed + 1)
        cur = cur[~isin(cur["request_id"], ref["request_id"])]  # a photo counts in one window only
        both = pd.concat([ref.assign(window="reference"), cur.assign(window="current")], ignore_index=True)
        # Rows in an order of their content, not of their times or ids: k-means' start depends
        # on the order, and the same photos must give the same clusters whenever they were sent.
        both = both.assign(_key=both["embedding"].map(bytes)).sort_values(
            ["_key", "window", "request_id"], kind="stable").drop(columns="_key").reset_index(drop=True)
        empty = pd.DataFrame(columns=["request_id", "window", "cluster", "x", "y", "label"])
        if len(ref) < 2 or len(cur) < 2:
            return ClusterReport([], 0, len(ref), len(cur), empty)
        x = from_bytes(both["embedding"].tolist()).astype(np.float64)
        space, xy, explained = _space(x, self.seed)
        k = self.k or choose_k(len(both))
        km = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(space)
        labels = km.labels_
        distance = np.linalg.norm(space - km.cluster_centers_[labels], axis=1)
        is_cur = (both["window"] == "current").to_numpy()
        ref_counts = np.bincount(labels[~is_cur], minlength=k)
        cur_counts = np.bincount(labels[is_cur], minlength=k)
        shifts = []
        for c in range(k):
            members = np.flatnonzero(labels == c)
            # examples: the current window's members first (what is new), nearest the centre first
            order = members[np.lexsort((distance[members], ~is_cur[members]))]
            foods = both["label"].iloc[members].dropna().astype(str).value_counts()
            foods = foods.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            shifts.append(ClusterShift(
                id=c, reference_share=float(ref_counts[c] / len(ref)), current_share=float(cur_counts[c] / len(cur)),
                reference_count=int(ref_counts[c]), current_count=int(cur_counts[c]),
                top_foods=foods.index[: self.top_foods].tolist(),
                examples=_distinct(both, order, self.examples),
                members=both["request_id"].iloc[order].tolist()))
        shifts.sort(key=lambda s: (-abs(s.change), s.id))
        points = pd.DataFrame({"request_id": both["request_id"], "window": both["window"], "cluster": labels,
                               "x": xy[:, 0], "y": xy[:, 1], "label": both["label"]})
        return ClusterReport(shifts, k, len(ref), len(cur), points, explained)


def map_sample(report: ClusterReport, cap: int = 300, seed: int = 0) -> pd.DataFrame:
    """At most ``cap`` of the map's points (seeded, each window in proportion), so a page can
    send every shown point's thumbnail with the chart without sending thousands."""
    points = report.points
    if len(points) <= cap:
        return points.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(points), size=cap, replace=False))
    return points.iloc[keep].reset_index(drop=True)


def cluster_drift(reference: pd.DataFrame, current: pd.DataFrame, **options) -> ClusterReport:
    """One-shot ``ClusterDrift(**options).fit(reference).compare(current)``."""
    return ClusterDrift(**options).fit(reference).compare(current)


__all__ = ["ClusterDrift", "ClusterReport", "ClusterShift", "choose_k", "cluster_drift", "map_sample"]
