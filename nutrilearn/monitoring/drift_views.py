"""Tables the Drift page draws: food shares side by side, overlays of one column by window,
and a 2-D projection of the embeddings. Long-format DataFrames with a ``window`` column,
ready for altair; nothing here draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nutrilearn.monitoring.stats import food_names
from nutrilearn.monitoring.versions import moves_within

from nutrilearn.monitoring.drift import embedded_rows, image_properties
from nutrilearn.monitoring.drift_tests import count_table, shares
from nutrilearn.monitoring.windows import usable

WINDOWS = ("reference", "current")


def food_shares(reference: pd.DataFrame, current: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """The ``top`` foods by their larger share: label, window, share, change (current - reference)."""
    table = count_table(usable(reference, ordered=False)["label"].dropna().astype(str),
                        usable(current, ordered=False)["label"].dropna().astype(str))
    s = shares(table).fillna(0)
    s = s.loc[s.max(axis=1).sort_values(ascending=False).index[:top]]
    s["change"] = s["current"] - s["reference"]
    long = s.reset_index(names="label").melt(id_vars=["label", "change"], value_vars=list(WINDOWS),
                                             var_name="window", value_name="share")
    long["food"] = food_names(long["label"])  # what a person reads; ``label`` stays the key
    return long[["label", "food", "window", "share", "change"]]


def overlay(reference: pd.DataFrame, current: pd.DataFrame, column: str) -> pd.DataFrame:
    """One numeric column (``confidence`` or an image property) of both windows, long format."""
    def values(frame: pd.DataFrame) -> pd.Series:
        if column == "confidence":
            return usable(frame, ordered=False)["confidence"].dropna().astype(float)
        return image_properties(frame)[column].dropna()

    parts = [pd.DataFrame({"window": name, column: values(frame).to_numpy()})
             for name, frame in zip(WINDOWS, (reference, current))]
    return pd.concat(parts, ignore_index=True)


def _embedded(frame: pd.DataFrame, cap: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``drift.embedded_rows`` (the rows ``drift.embeddings`` draws) and their embeddings,
    row for row: a point must know its request."""
    from nutrilearn.vision.embedding import from_bytes

    rows = embedded_rows(frame, cap, seed)
    # from_bytes drops empty blobs: drop their rows too (a boolean array: an empty Series
    # of objects would select columns and lose them all)
    rows = rows[rows["embedding"].map(bool).to_numpy(dtype=bool)]
    return rows, from_bytes(rows["embedding"].tolist())


def embedding_projection(reference: pd.DataFrame, current: pd.DataFrame, cap: int = 500, seed: int = 0) -> pd.DataFrame:
    """PCA of both windows' embeddings (at most ``cap`` each), fitted on the reference:
    columns pc1, pc2, window, request_id, label (so a point can show its photo and open its
    record); ``attrs["explained"]`` holds the two variance ratios."""
    from sklearn.decomposition import PCA

    (ref_rows, ref), (cur_rows, cur) = _embedded(reference, cap, seed), _embedded(current, cap, seed + 1)
    if len(ref) < 2 or len(cur) < 1:
        return pd.DataFrame(columns=["pc1", "pc2", "window", "request_id", "label"])
    pca = PCA(n_components=2, random_state=seed).fit(ref)
    xy = pca.transform(np.vstack([ref, cur]))
    rows = pd.concat([ref_rows[["request_id", "label"]], cur_rows[["request_id", "label"]]], ignore_index=True)
    out = pd.DataFrame({"pc1": xy[:, 0], "pc2": xy[:, 1],
                        "window": np.r_[np.full(len(ref), WINDOWS[0]), np.full(len(cur), WINDOWS[1])],
                        "request_id": rows["request_id"].astype(str), "label": rows["label"]})
    out.attrs["explained"] = [float(v) for v in pca.explained_variance_ratio_]
    return out


MOVE_COLUMNS = ["signal", "when", "text", "label"]


def over_time_moves(moves: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """Champion moves to mark on the "over time" chart (``moves`` from
    ``versions.alias_moves``, ``chunks`` from ``DriftMonitor.over_time``): those within the
    chunks' span (``versions.moves_within``), once for each signal, since the chart draws a
    row per signal and a model change explains a step in any of them. Columns: signal,
    when (aware UTC), text ("promote: v1 → v2"), label (what to write there)."""
    if moves is None or moves.empty or chunks is None or chunks.empty:
        return pd.DataFrame({"signal": pd.Series(dtype=object), "when": pd.Series(dtype="datetime64[ns, UTC]"),
                             "text": pd.Series(dtype=object), "label": pd.Series(dtype=object)})
    near = moves_within(moves, pd.concat([chunks["start"], chunks["end"]], ignore_index=True))
    signals = pd.DataFrame({"signal": chunks["signal"].drop_duplicates().to_numpy()})
    return signals.merge(near[["when", "text", "label"]], how="cross")[MOVE_COLUMNS]
