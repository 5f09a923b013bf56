"""Evaluation of a head on labelled features: the numbers every version is judged by.

Predictions follow the serving rule exactly (``FoodClassifier.classify``): a photo the
ImageNet logits call "not a recognised food" is predicted ``not_food`` whatever the head
says. A true label the head does not know can never be predicted: it counts as a miss,
with probability 0 (clipped) for log loss. Labels are the data's classes; predicting a
label outside them (another food, ``not_food``) is simply wrong.

Label relations (``nutrilearn/registry/label_relations.csv``) decide what "its true label"
means for a version that lacks the data's label: a ``breakfast_burrito`` photo answered
``burrito`` by a version that only knows ``burrito`` is right. Tables stay keyed by the
data's labels. ``coverage`` is the share of photos whose true label the version can
produce at all; ``covered_labels`` are those labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from nutrilearn.vision.heads import is_food
from nutrilearn.vision.vocabulary import NOT_FOOD

ECE_BINS = 10
_EPS = 1e-15


@dataclass
class Evaluation:
    """Everything ``nutrilearn evaluate`` reports; ``summary()`` is the flat metric dict."""

    n: int
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    top5_accuracy: float
    log_loss: float
    ece: float
    not_food_rate: float
    labels: list[str]
    confusion: list[list[int]]  # rows: true label (``labels``), columns: ``labels`` + ["other"]
    per_class: list[dict] = field(default_factory=list)  # label, precision, recall, f1, support
    reliability: list[dict] = field(default_factory=list)  # bin_lower, bin_upper, count, confidence, accuracy
    coverage: float = 1.0  # share of photos whose true label (or a related one) the version can produce
    covered_labels: list[str] = field(default_factory=list)  # the data's labels it can produce
    vocabulary: list[str] = field(default_factory=list)  # the labels the version can answer
    predicted: list[str] = field(default_factory=list)  # per photo, in the data's labels (not in to_dict)
    truth: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
                "f1_weighted", "top5_accuracy", "log_loss", "ece", "not_food_rate", "coverage")
        return {k: float(getattr(self, k)) for k in keys} | {"n": float(self.n)}

    def to_dict(self) -> dict:
        return self.summary() | {"labels": self.labels, "confusion": self.confusion, "per_class": self.per_class,
                                 "reliability": self.reliability, "covered_labels": self.covered_labels,
                                 "vocabulary_size": len(self.vocabulary)}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS):
    """ECE over equal-width confidence bins, and the per-bin table behind the reliability diagram."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece, n = [], 0.0, max(1, len(confidence))
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else float("nan")
        acc = float(correct[mask].mean()) if count else float("nan")
        if count:
            ece += count / n * abs(acc - conf)
        table.append({"bin_lower": float(lo), "bin_upper": float(hi), "count": count, "confidence": conf, "accuracy": acc})
    return float(ece), table


def evaluate_head(head, true_labels: list[str], pooled: np.ndarray, logits: np.ndarray) -> Evaluation:
    """Score ``head`` on photos with known labels (features from the shared backbone)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from nutrilearn.registry.labels import judged_truth

    probs = head.probabilities(logits, pooled)
    head_labels = np.array(head.labels)
    food = is_food(logits)
    top = np.argmax(probs, axis=1)
    predicted = np.where(food, head_labels[top], NOT_FOOD)
    # Calibration is about the head: ECE uses its top probability (for a not-food answer
    # serving shows 1 - P(food) instead, a different quantity).
    confidence = probs[np.arange(len(probs)), top]
    truth = np.array(true_labels)
    judged = np.array(judged_truth(list(truth), head.labels)) if len(truth) else truth
    # Answers in the data's labels: a related label the version answered for a photo
    # counts as the photo's own label (burrito for breakfast_burrito).
    predicted = np.where((predicted == judged) & (judged != truth), truth, predicted)
    correct = predicted == truth
    index = {label: i for i, label in enumerate(head.labels)}
    p_true = np.array([probs[i, index[t]] if t in index else 0.0 for i, t in enumerate(judged)])
    top5 = np.argsort(-probs, axis=1)[:, :5]
    in_top5 = np.array([t in set(head_labels[row]) for t, row in zip(judged, top5)])
    vocab = set(head.labels)
    is_covered = np.array([t in vocab for t in judged], dtype=bool)

    labels = sorted(set(true_labels))
    other = "other"
    mapped = np.where(np.isin(predicted, labels), predicted, other)
    cm = confusion_matrix(truth, mapped, labels=labels + [other])[: len(labels)]
    scores = {}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=labels, average=avg, zero_division=0)
        scores[avg] = (float(p), float(r), float(f))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, average=None, zero_division=0)
    per_class = [{"label": l, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, l in enumerate(labels)]
    ece, reliability = expected_calibration_error(confidence, correct)
    return Evaluation(
        n=len(truth),
        accuracy=float(correct.mean()),
        precision_macro=scores["macro"][0], recall_macro=scores["macro"][1], f1_macro=scores["macro"][2],
        precision_weighted=scores["weighted"][0], recall_weighted=scores["weighted"][1], f1_weighted=scores["weighted"][2],
        top5_accuracy=float(in_top5.mean()),
        log_loss=float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0)))),
        ece=ece,
        not_food_rate=float(np.mean(~food)),
        labels=labels,
        confusion=cm.astype(int).tolist(),
        per_class=per_class,
        reliability=reliability,
        coverage=float(is_covered.mean()) if len(is_covered) else float("nan"),
        covered_labels=sorted(set(truth[is_covered].tolist())),
        vocabulary=list(head.labels),
        predicted=predicted.tolist(),
        truth=truth.tolist(),
    )


def scores(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 (scikit-learn) of answers against truth,
    over ``labels`` (default: the true labels present)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    truth, predicted = list(truth), list(predicted)
    if not truth:
        return {"n": 0, "accuracy": float("nan"), "precision_macro": float("nan"), "recall_macro": float("nan"),
                "f1_macro": float("nan")}
    labels = sorted(set(truth)) if labels is None else list(labels)
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=labels, average="macro", zero_division=0)
    return {"n": len(truth), "accuracy": float(accuracy_score(truth, predicted)), "precision_macro": float(p),
            "recall_macro": float(r), "f1_macro": float(f)}


def compare_evaluations(evaluations: dict[str, "Evaluation"]) -> dict:
    """Versions scored on the same photos: each one's coverage and metrics overall, and
    metrics on the photos whose true label every version can produce (common labels)."""
    common = sorted(set.intersection(*(set(ev.covered_labels) for ev in evaluations.values()))) if evaluations else []
    out = {"common_labels": common, "versions": []}
    for version, ev in evaluations.items():
        keep = [i for i, t in enumerate(ev.truth) if t in set(common)]
        out["versions"].append({
            "version": version, "classes": list(ev.vocabulary), "coverage": ev.coverage,
            "covered_labels": ev.covered_labels,
            "overall": scores(ev.truth, ev.predicted) | {"top5_accuracy": ev.top5_accuracy, "ece": ev.ece},
            "common": scores([ev.truth[i] for i in keep], [ev.predicted[i] for i in keep], common),
        })
    out["n"] = next(iter(evaluations.values())).n if evaluations else 0
    out["common_photos"] = out["versions"][0]["common"]["n"] if out["versions"] else 0
    return out
