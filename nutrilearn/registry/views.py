"""Tables behind the Models page (pandas only, so they are tested without Streamlit)."""

from __future__ import annotations

import pandas as pd

from nutrilearn.registry.store import VersionInfo

METRICS = [("accuracy", "Accuracy"), ("precision_macro", "Precision"), ("recall_macro", "Recall"),
           ("f1_macro", "F1"), ("top5_accuracy", "Top-5"), ("ece", "ECE"), ("log_loss", "Log loss")]
LOWER_IS_BETTER = frozenset({"ece", "log_loss"})
# Accuracies, coverage and confidences are shares: shown through ``answers.percent`` like every
# share in the app; precision, recall and F1 (macro averages) and ECE stay scores.
PERCENT_METRICS = frozenset({"accuracy", "top5_accuracy"})
NUMBER_COLUMNS = ("precision", "recall", "F1", "ECE")
PERCENT_COLUMNS = ("coverage", "accuracy", "top-5", "mean confidence", "realized accuracy", "95% low", "95% high")


_COUNTS = ("live_predictions", "shadow_answers", "with_feedback")


def versions_table(versions: list[VersionInfo], live: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per version: registry figures (latest evaluation) + live figures by version;
    the long text columns (training data, evaluated on) last, so the numbers stay in view."""
    live = live.set_index("model_version") if live is not None and not live.empty else pd.DataFrame()

    def from_live(version: str, column: str):
        if column in live.columns:
            value = live[column].get(version)
            if value is not None or column not in _COUNTS:
                return value
        return 0 if live is not None and column in _COUNTS and len(live.columns) else None

    rows = []
    for v in versions:
        m = v.metrics
        rows.append({
            "version": int(v.version), "created": v.created.strftime("%Y-%m-%d %H:%M"), "aliases": ", ".join(v.aliases),
            "foods": len(v.classes) if v.classes is not None else int(v.tags.get("nutrilearn.classes", 0)) or None,
            "coverage": m.get("coverage"),
            "accuracy": m.get("accuracy"), "precision": m.get("precision_macro"), "recall": m.get("recall_macro"),
            "F1": m.get("f1_macro"), "top-5": m.get("top5_accuracy"), "ECE": m.get("ece"),
            "served answers": from_live(v.version, "live_predictions"),
            "shadow answers": from_live(v.version, "shadow_answers"),
            "mean confidence": from_live(v.version, "mean_confidence"),
            "judged": from_live(v.version, "with_feedback"),
            "realized accuracy": from_live(v.version, "realized_accuracy"),
            "95% low": from_live(v.version, "realized_low"),
            "95% high": from_live(v.version, "realized_high"),
            "training data": v.tags.get("nutrilearn.training_data", ""),
            "evaluated on": v.tags.get("eval.data", "not evaluated yet"),
        })
    return pd.DataFrame(rows)


def metric_deltas(ev_a: dict, ev_b: dict) -> list[dict]:
    """[{key, name, a, b, delta, lower_is_better, percent}] for the headline metrics
    (``percent``: the metric is a share, shown as a percent)."""
    return [{"key": k, "name": name, "a": ev_a.get(k), "b": ev_b.get(k), "delta": ev_b.get(k) - ev_a.get(k),
             "lower_is_better": k in LOWER_IS_BETTER, "percent": k in PERCENT_METRICS}
            for k, name in METRICS if ev_a.get(k) is not None and ev_b.get(k) is not None]


def per_class_deltas(ev_a: dict, ev_b: dict) -> pd.DataFrame:
    """Per-class F1 and recall of A and B over the union of their classes, with B - A."""
    per_a = pd.DataFrame(ev_a.get("per_class", []), columns=["label", "f1", "recall"]).set_index("label")
    per_b = pd.DataFrame(ev_b.get("per_class", []), columns=["label", "f1", "recall"]).set_index("label")
    labels = sorted(set(per_a.index) | set(per_b.index))
    out = pd.DataFrame({
        "label": labels,
        "F1 A": [per_a["f1"].get(l) for l in labels], "F1 B": [per_b["f1"].get(l) for l in labels],
        "recall A": [per_a["recall"].get(l) for l in labels], "recall B": [per_b["recall"].get(l) for l in labels],
    })
    out["F1 delta (B - A)"] = pd.to_numeric(out["F1 B"]) - pd.to_numeric(out["F1 A"])
    return out


def confusion_frame(ev: dict) -> pd.DataFrame:
    """Long form (true, predicted, count) of an evaluation's confusion matrix."""
    columns = ev["labels"] + ["other"]
    return pd.DataFrame([{"true": t, "predicted": p, "count": int(n)}
                         for t, row in zip(ev["labels"], ev["confusion"]) for p, n in zip(columns, row)],
                        columns=["true", "predicted", "count"])


def vocabulary_difference(vocab_a, vocab_b) -> dict:
    """What two versions can name: counts, the labels only one knows, and the common ones."""
    from nutrilearn.registry.labels import VocabularyDiff

    d = VocabularyDiff(tuple(vocab_a), tuple(vocab_b))
    return {"a": len(set(d.a)), "b": len(set(d.b)), "only_a": d.only_a, "only_b": d.only_b, "common": d.common,
            "same": d.same}


def common_ground(ev_a: dict, ev_b: dict) -> dict:
    """From two evaluations on the same photos: each one's coverage, the data labels both can
    produce, and accuracy (recall of the rows) on those labels' photos from the confusion matrices."""
    covered_a, covered_b = set(ev_a.get("covered_labels") or []), set(ev_b.get("covered_labels") or [])
    common = sorted(covered_a & covered_b)

    def on_common(ev: dict) -> tuple[float | None, int]:
        rows = {label: row for label, row in zip(ev.get("labels", []), ev.get("confusion", []))}
        n = sum(sum(rows[l]) for l in common if l in rows)
        right = sum(rows[l][ev["labels"].index(l)] for l in common if l in rows)
        return (right / n if n else None), n

    acc_a, n_a = on_common(ev_a)
    acc_b, n_b = on_common(ev_b)
    return {"common": common, "coverage_a": ev_a.get("coverage"), "coverage_b": ev_b.get("coverage"),
            "accuracy_a": acc_a, "accuracy_b": acc_b, "photos": n_a}


def history_table(events) -> pd.DataFrame:
    """Alias moves, newest first."""
    hist = pd.DataFrame([e.as_row() for e in reversed(events)],
                        columns=["when", "alias", "action", "from", "to", "who", "why", "vocabulary"])
    if not hist.empty:
        hist["when"] = pd.to_datetime(hist["when"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return hist
