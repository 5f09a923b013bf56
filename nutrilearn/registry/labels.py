"""Vocabularies and common ground between versions.

A version's *vocabulary* is the set of labels it can answer (version 1: ImageNet's 46
foods; a trained version: the class folders it was trained on). Two versions compare
fairly only on photos whose true label both can produce, so:

* ``label_relations.csv`` (next to this file) says which true labels count as another
  label for a version that lacks them (``breakfast_burrito`` counts as ``burrito`` for a
  version that only knows ``burrito``);
* ``truth_for(label, vocabulary)`` is the label a version is judged against;
* *coverage* is the share of photos whose (related) true label the version can produce;
* ``lost_foods`` is what a champion move would stop naming, with its share of traffic.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from nutrilearn.answers import percent
from nutrilearn.tracking.records import SHADOW_SUFFIX

RELATIONS_FILE = Path(__file__).with_name("label_relations.csv")
NOT_FOOD = "not_food"


@lru_cache(maxsize=4)
def label_relations(path: Path = RELATIONS_FILE) -> dict[str, tuple[str, ...]]:
    """``{true label: (labels it counts as, ...)}`` from the data file."""
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))
        for row in rows:
            label, counts_as = (row.get("label") or "").strip(), (row.get("counts_as") or "").strip()
            if label and counts_as and counts_as != label:
                out.setdefault(label, []).append(counts_as)
    return {k: tuple(v) for k, v in out.items()}


def truth_for(label: str, vocabulary: Iterable[str], relations: dict | None = None) -> str:
    """The label a version with ``vocabulary`` is judged against for a photo of ``label``:
    the label itself when the version knows it, else the first related label it knows,
    else the label itself (which the version can never produce: a miss)."""
    vocab = vocabulary if isinstance(vocabulary, (set, frozenset)) else set(vocabulary)
    if label in vocab:
        return label
    for other in (relations if relations is not None else label_relations()).get(label, ()):
        if other in vocab:
            return other
    return label


def judged_truth(true_labels: Sequence[str], vocabulary: Iterable[str]) -> list[str]:
    vocab = set(vocabulary)
    rel = label_relations()
    return [truth_for(t, vocab, rel) for t in true_labels]


def covered(true_labels: Sequence[str], vocabulary: Iterable[str]) -> np.ndarray:
    """Per photo: can the version produce its (related) true label?"""
    vocab = set(vocabulary)
    return np.array([t in vocab for t in judged_truth(true_labels, vocab)], dtype=bool)


def coverage(true_labels: Sequence[str], vocabulary: Iterable[str]) -> float:
    """Share of the photos whose true label (or a related one) the version can produce."""
    mask = covered(true_labels, vocabulary)
    return float(mask.mean()) if len(mask) else float("nan")


@dataclass(frozen=True)
class VocabularyDiff:
    a: tuple[str, ...]
    b: tuple[str, ...]

    @property
    def only_a(self) -> list[str]:
        return sorted(set(self.a) - set(self.b))

    @property
    def only_b(self) -> list[str]:
        return sorted(set(self.b) - set(self.a))

    @property
    def common(self) -> list[str]:
        return sorted(set(self.a) & set(self.b))

    @property
    def same(self) -> bool:
        return set(self.a) == set(self.b)


@dataclass(frozen=True)
class LostFood:
    label: str
    count: int  # served answers naming it in the traffic looked at
    share: float  # of that traffic


@dataclass(frozen=True)
class VocabularyLoss:
    """What a champion move would stop naming."""

    champion: str | None
    candidate: str
    not_in_candidate: tuple[str, ...]  # the champion's labels the candidate lacks (all of them)
    lost: tuple[LostFood, ...]  # those of them the champion named in the traffic, busiest first
    traffic: int  # served answers looked at
    traffic_kind: str  # "live" or "replayed"
    days: float

    @property
    def blocks(self) -> bool:
        return bool(self.lost)

    def message(self) -> str:
        foods = ", ".join(f"{display(f.label)} {percent(f.share)}" for f in self.lost)
        total = sum(f.share for f in self.lost)
        return (f"version {self.candidate} cannot name {len(self.lost)} food(s) that the champion "
                f"(version {self.champion}) named in the last {self.days:g} days of {self.traffic_kind} traffic "
                f"({percent(total)} of {self.traffic:,} served answers): {foods}. In all, {len(self.not_in_candidate)} of "
                f"version {self.champion}'s labels are not in version {self.candidate}'s vocabulary")

    def record(self) -> str:
        """What the alias history keeps when the change is accepted."""
        return (f"accepted: {len(self.not_in_candidate)} labels of version {self.champion} not in version "
                f"{self.candidate}" + (f"; named in recent {self.traffic_kind} traffic: " +
                                       ", ".join(f"{f.label} {percent(f.share)}" for f in self.lost) if self.lost else ""))


def display(label: str) -> str:
    from nutrilearn.vision.vocabulary import display_name

    return display_name(label)


def recent_served(predictions: pd.DataFrame | None, version: str | None, days: float,
                  now: pd.Timestamp | None = None) -> tuple[pd.DataFrame, str]:
    """The successful served (not shadow) answers of ``version`` in the last ``days``
    days: live ones, or replayed ones when there is no live traffic."""
    if predictions is None or predictions.empty or version is None:
        return pd.DataFrame(columns=["label"]), "live"
    df = predictions
    ts = pd.to_datetime(df["timestamp"], utc=True)
    now = now or pd.Timestamp.now(tz="UTC")
    mask = ((df["status"].astype(object) == "ok") & (df["model_version"].astype(str) == str(version))
            & (ts >= now - pd.Timedelta(days=days)) & (ts <= now + pd.Timedelta(days=1)))
    mask &= ~df["request_id"].astype(str).str.endswith(SHADOW_SUFFIX)
    if "model_alias" in df:
        mask &= df["model_alias"].astype(object) != "challenger"
    served = df[mask.to_numpy(dtype=bool, na_value=False)]
    replayed = (served["source"].astype(object) == "replay") if "source" in served else pd.Series(False, index=served.index)
    live = served[~replayed.to_numpy(dtype=bool, na_value=False)]
    if len(live):
        return live, "live"
    return served, "replayed"


def lost_foods(champion: str | None, champion_vocab: Iterable[str], candidate: str, candidate_vocab: Iterable[str],
               predictions: pd.DataFrame | None, days: float = 7.0) -> VocabularyLoss:
    """Foods the champion named in recent traffic that the candidate cannot name."""
    missing = sorted(set(champion_vocab) - set(candidate_vocab) - {NOT_FOOD})
    served, kind = recent_served(predictions, champion, days)
    counts = served["label"].astype(object).value_counts() if len(served) else pd.Series(dtype="int64")
    total = int(len(served))
    lost = sorted((LostFood(label, int(counts.get(label, 0)), counts.get(label, 0) / total)
                   for label in missing if counts.get(label, 0) > 0), key=lambda f: (-f.count, f.label))
    return VocabularyLoss(champion, str(candidate), tuple(missing), tuple(lost), total, kind, days)
