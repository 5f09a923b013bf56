"""Which model said it: figures per model version, shadow answers beside served ones.

A record is a *served* answer (what a person was given: the champion's) or a *shadow*
answer (a challenger's answer to the same photo, request id ``<served id>.challenger``).
Volumes, health, drift windows and trends count served answers only; the functions here
are where versions meet on purpose:

* ``accuracy_by_version``: realized accuracy per version and role (served / shadow), always
  with the number of judged answers and a 95% Wilson interval;
* ``daily_accuracy``: the same per UTC day and version (served answers), for trend lines
  that never pool versions;
* ``disagreement_daily``: per UTC day, how often the challenger's answer differed from
  the champion's on the same photo (a signal that needs no labels);
* ``with_challenger``: the recent-predictions table with the challenger's answer beside;
* ``alias_moves`` / ``champion_moves``: champion moves from the registry's history, and
  ``moves_within`` the ones a time chart can show, for markers on the trend charts
  (Monitoring's trends, Drift's "over time").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nutrilearn.monitoring.stats import SHADOW_SUFFIX, food_names, is_prepared, is_shadow, prepare

SERVED, SHADOW = "served", "shadow"


def wilson(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials (arrays or scalars);
    NaN where ``n`` is 0. Same as ``scipy.stats.binomtest(k, n).proportion_ci("wilson")``."""
    from scipy import stats

    k = np.asarray(k, dtype="float64")
    n = np.asarray(n, dtype="float64")
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low, high = np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)
    low = np.where((k == 0) & (n > 0), 0.0, low)  # exact ends (no 1e-17 left by rounding)
    high = np.where((k == n) & (n > 0), 1.0, high)
    return np.clip(low, 0, 1), np.clip(high, 0, 1)


def roles(request_ids: pd.Series) -> np.ndarray:
    ids = pd.Series(request_ids).astype("str")
    return np.where(ids.str.endswith(SHADOW_SUFFIX).to_numpy(dtype=bool, na_value=False), SHADOW, SERVED)


ACCURACY_COLUMNS = ["model_version", "answers", "judged", "correct", "accuracy", "low", "high"]


def accuracy_by_version(joined: pd.DataFrame) -> pd.DataFrame:
    """Realized accuracy per (version, served/shadow) from ``stats.join_feedback``:
    judged answers, correct, accuracy and its 95% Wilson interval (low, high)."""
    if joined is None or joined.empty:
        return pd.DataFrame(columns=ACCURACY_COLUMNS)
    frame = pd.DataFrame({"model_version": joined["model_version"].astype(str).to_numpy(),
                          "answers": roles(joined["request_id"]),
                          "correct": joined["correct"].astype("int64").to_numpy()})
    g = frame.groupby(["model_version", "answers"], sort=False)["correct"].agg(judged="size", correct="sum").reset_index()
    g["accuracy"] = g["correct"] / g["judged"]
    g["low"], g["high"] = wilson(g["correct"], g["judged"])
    g["_key"] = [(int(v) if str(v).isdigit() else 10**9, a != SERVED) for v, a in zip(g["model_version"], g["answers"])]
    return g.sort_values("_key").drop(columns="_key").reset_index(drop=True)[ACCURACY_COLUMNS]


def daily_accuracy(joined: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day and version, served answers only: judged, accuracy, low, high."""
    cols = ["day", "model_version", "judged", "accuracy", "low", "high"]
    if joined is None or joined.empty:
        return pd.DataFrame(columns=cols)
    served = joined[roles(joined["request_id"]) == SERVED]
    if served.empty:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame({"day": pd.to_datetime(served["timestamp"], utc=True).dt.floor("D").to_numpy(),
                          "model_version": served["model_version"].astype(str).to_numpy(),
                          "correct": served["correct"].astype("int64").to_numpy()})
    g = frame.groupby(["day", "model_version"])["correct"].agg(judged="size", k="sum").reset_index()
    g["accuracy"] = g["k"] / g["judged"]
    g["low"], g["high"] = wilson(g["k"], g["judged"])
    g["day"] = pd.to_datetime(g["day"], utc=True)
    return g[cols]


def shadow_pairs(data: pd.DataFrame) -> pd.DataFrame:
    """Served answers joined with the challenger's shadow answer to the same photo:
    request_id, timestamp, served version/label/confidence, challenger version/label/confidence."""
    df = data if is_prepared(data) else prepare(data)
    ok = (df["status"] == "ok").to_numpy(dtype=bool, na_value=False)
    shadow_mask = is_shadow(df)
    served, shadow = df.loc[ok & ~shadow_mask], df.loc[ok & shadow_mask]
    cols = ["request_id", "timestamp", "model_version", "label", "confidence",
            "challenger_version", "challenger_label", "challenger_confidence"]
    if served.empty or shadow.empty:
        return pd.DataFrame(columns=cols)
    sh = pd.DataFrame({"request_id": shadow["request_id"].astype(str).str.removesuffix(SHADOW_SUFFIX).to_numpy(),
                       "challenger_version": shadow["model_version"].astype(object).to_numpy(),
                       "challenger_label": shadow["label"].astype(object).to_numpy(),
                       "challenger_confidence": shadow["confidence"].to_numpy()}).drop_duplicates("request_id", keep="last")
    sv = pd.DataFrame({"request_id": served["request_id"].astype(str).to_numpy(),
                       "timestamp": served["timestamp"].array,
                       "model_version": served["model_version"].astype(object).to_numpy(),
                       "label": served["label"].astype(object).to_numpy(),
                       "confidence": served["confidence"].to_numpy()})
    return sv.merge(sh, on="request_id", how="inner")[cols]


def disagreement_daily(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day: photos answered by both, disagreements, rate, 95% Wilson interval."""
    cols = ["day", "pairs", "disagreements", "rate", "low", "high"]
    if pairs is None or pairs.empty:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame({"n": 1, "d": (pairs["label"] != pairs["challenger_label"]).astype("int64").to_numpy()},
                         index=pd.DatetimeIndex(pd.to_datetime(pairs["timestamp"], utc=True)))
    g = frame.resample("D").sum()
    g = g[g["n"] > 0]
    out = pd.DataFrame({"day": g.index, "pairs": g["n"].astype("int64").to_numpy(),
                        "disagreements": g["d"].astype("int64").to_numpy()})
    out["rate"] = out["disagreements"] / out["pairs"]
    out["low"], out["high"] = wilson(out["disagreements"], out["pairs"])
    return out[cols]


def with_challenger(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """``stats.recent`` rows with the challenger's answer (food, confidence, version) beside."""
    if pairs is None or pairs.empty:
        return rows.assign(challenger_food=None, challenger_confidence=np.nan, challenger_version=None)
    by_id = pairs.set_index("request_id")
    ids = rows["request_id"].astype(str)
    label = ids.map(by_id["challenger_label"])
    return rows.assign(challenger_food=food_names(label.astype(object)),
                       challenger_confidence=ids.map(by_id["challenger_confidence"]).astype("float64"),
                       challenger_version=ids.map(by_id["challenger_version"]))


def alias_moves(events, alias: str = "champion") -> pd.DataFrame:
    """Moves of ``alias`` (when, from, to, action, text) for rule marks on time charts."""
    rows = [{"when": pd.Timestamp(e.when).tz_convert("UTC") if pd.Timestamp(e.when).tzinfo else
             pd.Timestamp(e.when).tz_localize("UTC"), "from": e.from_version or "", "to": e.to_version or "",
             "action": e.action, "text": f"{e.action}: v{e.from_version or '-'} → v{e.to_version or '-'}"}
            for e in events or () if e.alias == alias and e.to_version]
    return pd.DataFrame(rows, columns=["when", "from", "to", "action", "text"])


MOVE_MARGIN = pd.Timedelta(days=1)
MOVE_LABEL_APART = 0.08  # of a chart's span: closer moves share one label


def champion_moves(settings) -> pd.DataFrame:
    """Champion moves (``alias_moves``) from the registry's alias history; none when
    there is no registry yet (a fresh store)."""
    from nutrilearn.registry.routing import registry_exists
    from nutrilearn.registry.store import Registry

    if not registry_exists(settings):
        return alias_moves([])
    return alias_moves(Registry(settings).history())


def moves_within(moves: pd.DataFrame, times, margin: pd.Timedelta = MOVE_MARGIN,
                 apart: float = MOVE_LABEL_APART) -> pd.DataFrame:
    """The ``moves`` within the span of ``times`` (aware, or naive taken as UTC) widened by
    ``margin`` either side: the ones a chart of those times can show without its axis
    stretching over months (all of them when ``times`` is empty). A ``label`` column says
    what to write at each rule: moves closer than ``apart`` of the span to the previous
    labelled one (a bootstrap and a promotion a minute apart) share its label, "; "-joined,
    and get none of their own, so labels never print over each other."""
    stamps = pd.to_datetime(pd.Series(times, dtype=object), utc=True).dropna()
    if not moves.empty and not stamps.empty:
        lo, hi = stamps.min() - margin, stamps.max() + margin
        moves = moves[(moves["when"] >= lo) & (moves["when"] <= hi)]
    moves = moves.sort_values("when", kind="stable").reset_index(drop=True)
    labels = [""] * len(moves)
    if len(moves):
        ends = pd.concat([stamps, moves["when"]]) if len(stamps) else moves["when"]
        gap = max((ends.max() - ends.min()) * apart, pd.Timedelta(minutes=1))
        head = 0
        labels[0] = moves["text"].iloc[0]
        for i in range(1, len(moves)):
            if moves["when"].iloc[i] - moves["when"].iloc[head] < gap:
                labels[head] += "; " + moves["text"].iloc[i]
            else:
                head, labels[i] = i, moves["text"].iloc[i]
    return moves.assign(label=labels)
