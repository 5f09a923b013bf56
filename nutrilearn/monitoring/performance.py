"""Performance without labels, beside performance with them, and calibration.

- Confidence-based performance estimation (CBPE): a calibrated classifier's expected
  accuracy on a chunk is the mean of its top-1 confidences; the chunk's realized accuracy
  then varies around it with standard error sqrt(sum p_i (1 - p_i)) / n (a sum of
  independent Bernoulli(p_i)). The estimate is only as good as the calibration, so the
  same module measures calibration (ECE and a reliability table) wherever feedback exists:
  read the estimate together with the ECE of the window it rests on.
- Realized accuracy: the share of predictions with feedback whose label was right, with
  a Wilson interval (scipy.stats.binomtest), per chunk.
- Calibration per version and per window: expected calibration error over equal-width
  confidence bins and the reliability diagram's table (sklearn.calibration.calibration_curve).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from nutrilearn.monitoring.windows import chunk_spans, usable

Z95 = float(stats.norm.ppf(0.975))


def labelled(predictions: pd.DataFrame, feedback: pd.DataFrame | None = None) -> pd.DataFrame:
    """Successful predictions that have a true label, with ``confidence`` and ``correct``.

    The true label comes from ``feedback`` (latest per request wins, see
    ``stats.join_feedback``) or, for photo folders, from a ``true_label`` column."""
    data = usable(predictions, ordered=False)
    if feedback is None:
        if "true_label" not in data:
            return data.iloc[:0].assign(true_label=pd.Series(dtype=object), correct=pd.Series(dtype=bool))
        out = data[data["true_label"].notna()].copy()
    else:
        from nutrilearn.monitoring.stats import join_feedback

        joined = join_feedback(data, feedback)
        out = data.merge(joined[["request_id", "true_label"]], on="request_id", how="inner",
                         suffixes=("_folder", ""))
    out["correct"] = (out["label"] == out["true_label"]).to_numpy(dtype=bool, na_value=False)
    return out


def estimate(frame: pd.DataFrame, truth: pd.DataFrame | None = None) -> dict:
    """CBPE and (if ``truth`` from ``labelled`` has rows) realized accuracy for one window."""
    conf = usable(frame, ordered=False)["confidence"].dropna().to_numpy(float)
    if truth is not None and len(truth):
        return _estimate(conf, int(truth["correct"].sum()), len(truth))
    return _estimate(conf, 0, 0)


def _estimate(conf: np.ndarray, k: int, m: int) -> dict:
    """``estimate`` from the confidences (no NaN) and ``k`` right of ``m`` labelled."""
    n = len(conf)
    expected = float(conf.mean()) if n else np.nan
    se = float(np.sqrt(np.sum(conf * (1 - conf))) / n) if n else np.nan
    row = {"n": n, "expected_accuracy": expected, "expected_lower": expected - Z95 * se,
           "expected_upper": expected + Z95 * se, "labelled": 0, "realized_accuracy": np.nan,
           "realized_lower": np.nan, "realized_upper": np.nan}
    if m:
        ci = stats.binomtest(k, m).proportion_ci(method="wilson")
        row.update(labelled=m, realized_accuracy=k / m, realized_lower=ci.low, realized_upper=ci.high)
    return row


def performance_over_time(frame: pd.DataFrame, every: str | int, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Estimated (CBPE) and realized accuracy per chunk (``windows.chunks``): ``estimate`` of
    each chunk, from columns sliced per chunk and the labelled rows matched to their chunks
    in one join (not a frame, a usable filter and a search of ``truth`` per chunk)."""
    data, spans = chunk_spans(frame, every)
    conf = data["confidence"].to_numpy(float) if len(data) else np.empty(0)
    judged = np.zeros((len(spans), 2), dtype=int)  # (right, labelled) per chunk
    if truth is not None and len(truth) and spans:
        ids = data["request_id"].to_numpy()
        where = pd.DataFrame({"request_id": np.concatenate([ids[rows] for _, _, rows in spans]),
                              "chunk": np.repeat(np.arange(len(spans)), [len(rows) for _, _, rows in spans])})
        # a labelled row counts once in each chunk holding its request id (as isin)
        hits = truth[["request_id", "correct"]].merge(where.drop_duplicates(), on="request_id")
        counted = hits.groupby("chunk")["correct"].agg(["sum", "size"])
        judged[counted.index.to_numpy()] = counted.to_numpy(int)
    rows = []
    for i, (start, end, at) in enumerate(spans):
        mine = conf[at]
        right, labelled_ = (int(x) for x in judged[i])
        rows.append({"start": start, "end": end, **_estimate(mine[~np.isnan(mine)], right, labelled_)})
    columns = ["start", "end", "n", "expected_accuracy", "expected_lower", "expected_upper", "labelled",
               "realized_accuracy", "realized_lower", "realized_upper"]
    return pd.DataFrame(rows, columns=columns)


def reliability(truth: pd.DataFrame, n_bins: int = 10) -> tuple[float, pd.DataFrame]:
    """(ECE, reliability table) for labelled predictions: per equal-width confidence bin,
    its count, mean confidence and accuracy. ECE = sum over bins of (count / n) *
    |accuracy - mean confidence|."""
    from sklearn.calibration import calibration_curve

    columns = ["bin_lower", "bin_upper", "count", "mean_confidence", "accuracy", "gap"]
    if truth.empty:
        return float("nan"), pd.DataFrame(columns=columns)
    y, p = truth["correct"].to_numpy(int), truth["confidence"].to_numpy(float).clip(0, 1)
    accuracy, confidence = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # the same binning calibration_curve uses
    counts = np.bincount(ids, minlength=n_bins)
    used = np.flatnonzero(counts)
    table = pd.DataFrame({"bin_lower": edges[used], "bin_upper": edges[used + 1], "count": counts[used],
                          "mean_confidence": confidence, "accuracy": accuracy})
    table["gap"] = table["accuracy"] - table["mean_confidence"]
    ece = float(np.sum(table["count"] / len(p) * table["gap"].abs()))
    return ece, table[columns]


def calibration_by(truth: pd.DataFrame, by: str | list[str] = "model_version", n_bins: int = 10) -> pd.DataFrame:
    """ECE, mean confidence and accuracy per group (e.g. per version, or per version and
    window after ``assign(window=...)``)."""
    rows = []
    for key, part in truth.groupby(by, sort=True):
        ece, _ = reliability(part, n_bins)
        keys = key if isinstance(key, tuple) else (key,)
        names = [by] if isinstance(by, str) else list(by)
        rows.append({**dict(zip(names, keys)), "labelled": len(part), "ece": ece,
                     "mean_confidence": float(part["confidence"].mean()),
                     "accuracy": float(part["correct"].mean())})
    return pd.DataFrame(rows)
