"""Live figures per model version, from the prediction log: how many predictions, mean
confidence, and realized accuracy (the share of predictions a person's feedback agreed
with). Challenger records shadow a champion request (``<request id>.challenger``), so
feedback on that photo scores both versions."""

from __future__ import annotations

import pandas as pd

from nutrilearn.registry.routing import CHALLENGER_SUFFIX

COLUMNS = ["model_version", "live_predictions", "shadow_answers", "mean_confidence", "with_feedback",
           "realized_accuracy", "realized_low", "realized_high"]


def live_figures(predictions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """One row per model version (replayed traffic excluded): ``live_predictions`` counts the
    answers people were given (served), ``shadow_answers`` the challenger's answers to the
    same photos; mean confidence and realized accuracy (with the number judged and a 95%
    Wilson interval) use both, so a challenger is judged on the photos it saw."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = predictions
    if "source" in df.columns:
        df = df[df["source"] != "replay"]
    df = df.assign(photo_id=df["request_id"].astype(str).str.removesuffix(CHALLENGER_SUFFIX),
                   ok=df["status"] == "ok")
    if feedback is not None and not feedback.empty:
        truth = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")["label"]
        df = df.assign(truth=df["photo_id"].map(truth))
    else:
        df = df.assign(truth=pd.Series([None] * len(df), index=df.index, dtype=object))
    df = df.assign(has_feedback=df["truth"].notna() & df["ok"])
    df = df.assign(agreed=(df["label"] == df["truth"]) & df["has_feedback"],
                   shadow=df["request_id"].astype(str).str.endswith(CHALLENGER_SUFFIX))
    df = df.assign(served=~df["shadow"])
    out = df.groupby(df["model_version"].astype(str)).agg(
        live_predictions=("served", "sum"),
        shadow_answers=("shadow", "sum"),
        mean_confidence=("confidence", lambda s: float(s[df.loc[s.index, "ok"]].mean()) if len(s) else float("nan")),
        with_feedback=("has_feedback", "sum"),
        agreed=("agreed", "sum"),
    )
    out["realized_accuracy"] = out["agreed"] / out["with_feedback"].where(out["with_feedback"] > 0)
    from nutrilearn.monitoring.versions import wilson

    out["realized_low"], out["realized_high"] = wilson(out["agreed"], out["with_feedback"])
    out = out.astype({"live_predictions": "int64", "shadow_answers": "int64", "with_feedback": "int64"})
    return out.drop(columns="agreed").reset_index()[COLUMNS]


def load_live_figures(settings, reader=None) -> pd.DataFrame:
    """``live_figures`` over everything logged (a fresh reader unless one is given)."""
    from nutrilearn.tracking.reader import PredictionReader

    own = reader is None
    reader = reader or PredictionReader(settings)
    try:
        columns = ("request_id", "timestamp", "source", "status", "label", "confidence", "model_version")
        return live_figures(reader.predictions(columns=columns), reader.feedback())
    finally:
        if own:
            reader.close()
