"""Replay: real predictions on real labelled photos, logged as traffic over simulated days.

``replay`` samples ``n`` photos from class folders (``DIR/<label>/*.jpg``, any depth: the
label is the photo's folder name), runs them through the real prediction path, and hands
the records to the prediction logger as if ``users`` people had sent them over the last
``days`` days, with a daily rhythm (breakfast, lunch and dinner peaks, quiet nights,
lighter weekends; all in UTC). Every record is tagged ``source="replay"`` so no one takes
it for live traffic, and the monitoring page hides it by default. For a share of the
successful predictions, feedback with the true label (the folder name) is logged too.

Speed: by default each *distinct* photo is predicted once and its record (label,
confidence, top 5, latency split, image statistics, embedding) is reused, with a fresh
request id, time and user, for every time the sample repeats it. Sampling with
replacement only happens when ``n`` exceeds the photos available, so with
``n <= photos`` every record is its own real prediction. ``reuse_predictions=False``
predicts every sampled photo separately (slower; latencies then vary between repeats).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from nutrilearn.pipeline import IMAGE_SUFFIXES, Photo
from nutrilearn.tracking.records import (
    REPLAY_SOURCE,
    SHADOW_SUFFIX,
    FeedbackRecord,
    PredictionRecord,
    as_utc,
    new_request_id,
    utc_now,
)

# Relative traffic per UTC hour of day: breakfast, lunch and dinner peaks, quiet nights.
HOUR_WEIGHTS = np.array([0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 2.0, 4.5, 6.0, 4.0, 2.5, 4.0,
                         7.0, 6.5, 3.0, 2.0, 2.0, 3.0, 5.5, 7.5, 5.0, 3.0, 1.8, 1.0])
WEEKEND_FACTOR = 0.7  # Saturdays and Sundays see this share of a weekday's traffic
FEEDBACK_DELAY_S = (5.0, 600.0)  # feedback follows its prediction by 5 s to 10 min


class Sink(Protocol):
    def submit(self, record: PredictionRecord) -> object: ...
    def submit_feedback(self, feedback: FeedbackRecord) -> object: ...


Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: str  # the folder it sits in


@dataclass
class ReplayResult:
    records: list[PredictionRecord]  # in time order
    feedback: list[FeedbackRecord]
    photos_available: int
    distinct_photos: int  # how many photos the sample touched
    predicted: int  # how many forward passes were run (== distinct_photos when reused)
    elapsed_s: float
    shadow: list[PredictionRecord] = dataclasses.field(default_factory=list)  # a challenger's, if one runs

    @property
    def errors(self) -> int:
        return sum(not r.ok for r in self.records)


class OutsideReplayRoot(ValueError):
    """A photos folder (or a photo in it) that is not inside the configured replay root."""


def folder_within(root: Path, requested: str | Path) -> Path:
    """The folder ``requested`` names, resolved, when it lies inside ``root``.

    ``requested`` is relative to ``root`` (``food10/test``) or absolute. Symlinks are
    resolved before the check, so ``..``, an absolute path elsewhere and a link that leads
    out of ``root`` are all refused alike (``OutsideReplayRoot``, a ``ValueError`` whose
    message says what to do). The app's replay panel reads photos through this only.
    """
    text = str(requested).strip()
    if not text:
        raise ValueError(f"Give a photos folder inside {root} (relative to it, e.g. food10/test).")
    if "\x00" in text:
        raise OutsideReplayRoot("A folder name cannot contain a NUL character.")
    base = Path(root).expanduser().resolve()
    folder = (base / Path(text).expanduser()).resolve()  # an absolute ``text`` replaces ``base``
    if not folder.is_relative_to(base):
        raise OutsideReplayRoot(
            f"Refused: {text} is outside the replay photo root {base}. Photos for replay must be in "
            "class folders under that root (set NUTRILEARN_REPLAY_ROOT to change it); give a folder "
            "relative to it, e.g. food10/test.")
    return folder


def labelled_photos(root: Path, confine_to: Path | None = None) -> list[LabelledPhoto]:
    """Every image under ``root`` in a class folder, sorted by path (files lying in
    ``root`` itself have no class folder and are skipped). With ``confine_to``, photos
    whose real path is outside that folder (symlinks leading out) are left out."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    base = None if confine_to is None else Path(confine_to).resolve()
    return [LabelledPhoto(p, p.parent.name) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.parent != root
            and (base is None or p.resolve().is_relative_to(base))]


def user_names(count: int) -> list[str]:
    return [f"replay-user-{i:02d}" for i in range(1, count + 1)]


def user_weights(count: int) -> np.ndarray:
    """A few busy users and a long tail (Zipf-like, exponent 0.8)."""
    w = 1.0 / np.arange(1, count + 1) ** 0.8
    return w / w.sum()


def simulated_times(n: int, days: float, now: datetime, rng: np.random.Generator) -> list[datetime]:
    """``n`` sorted times in ``(now - days, now]`` following ``HOUR_WEIGHTS`` and weekends.

    Rejection sampling: uniform candidates are kept with probability weight / max weight.
    """
    if n <= 0:
        return []
    now = as_utc(now)
    span_s = days * 86400.0
    start = now - timedelta(seconds=span_s)
    hour_w = HOUR_WEIGHTS / HOUR_WEIGHTS.max()
    start_ts = start.timestamp()
    kept: list[np.ndarray] = []
    have = 0
    while have < n:
        cand = start_ts + rng.uniform(0.0, span_s, size=2 * (n - have) + 16)
        cand = cand[cand > start_ts]
        hours = ((cand // 3600) % 24).astype(int)
        weekday = ((cand // 86400 + 3) % 7).astype(int)  # 1970-01-01 was a Thursday (3)
        weight = hour_w[hours] * np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)
        cand = cand[rng.uniform(0.0, 1.0, size=len(cand)) < weight]
        kept.append(cand)
        have += len(cand)
    stamps = np.sort(np.concatenate(kept)[:n])
    tz = now.tzinfo
    return [datetime.fromtimestamp(float(s), tz) for s in stamps]


def replay(
    photos_dir: Path,
    n: int,
    days: float,
    users: int,
    feedback_share: float = 0.0,
    seed: int = 0,
    *,
    analyzer,
    sink: Sink | None = None,
    now: datetime | None = None,
    batch_size: int = 32,
    reuse_predictions: bool = True,
    progress: Progress | None = None,
    confine_to: Path | None = None,
) -> ReplayResult:
    """Predict ``n`` sampled photos for real and log them as replayed traffic.

    ``analyzer`` is what ``nutrilearn.serving.build_analyzer(settings, sink=None)``
    returns (the champion answers; a challenger in shadow answers too, and its records
    are replayed beside the champion's). It must have no sink of its own: records go to
    ``sink`` only once their simulated time and user are set.
    ``feedback_share`` of the successful predictions get feedback with the true label.
    Returns every record and feedback made, whether or not a sink was given.
    ``confine_to``: read no photo whose real path is outside this folder (the app's
    replay root; see ``folder_within``).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if days <= 0:
        raise ValueError("days must be positive")
    if users < 1:
        raise ValueError("users must be at least 1")
    if not 0.0 <= feedback_share <= 1.0:
        raise ValueError("feedback_share must be between 0 and 1")
    t0 = time.perf_counter()
    found = labelled_photos(photos_dir, confine_to)
    if not found:
        raise ValueError(f"no photos in class folders under {photos_dir} (expected DIR/<label>/*.jpg)")
    rng = np.random.default_rng(seed)
    now = as_utc(now or utc_now())
    picks = rng.choice(len(found), size=n, replace=n > len(found))
    times = simulated_times(n, days, now, rng)
    names = user_names(users)
    who = rng.choice(users, size=n, p=user_weights(users))

    if getattr(analyzer, "sink", None) is not None:
        raise ValueError("give replay an analyzer without a sink: records are logged through `sink` "
                         "once their simulated time and user are set")
    if reuse_predictions:
        distinct = sorted(set(picks.tolist()))
        answers = _predict(analyzer, [found[i] for i in distinct], batch_size, progress)
        base = dict(zip(distinct, answers))
        records, shadows = [], []
        for i, when, u in zip(picks.tolist(), times, who):
            rec, shadow = base[i]
            rid = new_request_id()
            records.append(dataclasses.replace(rec, request_id=rid, timestamp=when, user=names[u],
                                               source=REPLAY_SOURCE))
            shadows.extend(dataclasses.replace(s, request_id=rid + SHADOW_SUFFIX, timestamp=when, user=names[u],
                                               source=REPLAY_SOURCE) for s in shadow)
        predicted = len(distinct)
    else:
        answers = _predict(analyzer, [found[i] for i in picks], batch_size, progress)
        records, shadows = [], []
        for (rec, shadow), when, u in zip(answers, times, who):
            for r in (rec, *shadow):
                r.timestamp, r.user, r.source = when, names[u], REPLAY_SOURCE
            records.append(rec)
            shadows.extend(shadow)
        predicted = n

    feedback = _feedback(records, [found[i].label for i in picks], feedback_share, now, rng)
    if sink is not None:
        for record in records:
            sink.submit(record)
        for record in shadows:
            sink.submit(record)
        for fb in feedback:
            sink.submit_feedback(fb)
    return ReplayResult(records, feedback, len(found), len(set(picks.tolist())), predicted,
                        time.perf_counter() - t0, shadows)


def _predict(analyzer, photos: list[LabelledPhoto], batch_size: int,
             progress: Progress | None) -> list[tuple[PredictionRecord, tuple[PredictionRecord, ...]]]:
    """Real predictions, read and run a batch at a time (memory stays flat): each photo's
    record with the challenger's shadow record(s) for it, when one serves in shadow."""
    out = []
    total = len(photos)
    for start in range(0, total, batch_size):
        chunk = photos[start:start + batch_size]
        batch = [Photo(p.path.name, p.path.read_bytes()) for p in chunk]
        records = analyzer.analyze(batch, user="replay", source=REPLAY_SOURCE, batch_size=batch_size)
        shadows: dict[str, list[PredictionRecord]] = {}
        for s in getattr(analyzer, "last_challenger_records", None) or []:
            shadows.setdefault(s.request_id[: -len(SHADOW_SUFFIX)], []).append(s)
        out.extend((r, tuple(shadows.get(r.request_id, ()))) for r in records)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return out


def _feedback(records: list[PredictionRecord], labels: list[str], share: float, now: datetime,
              rng: np.random.Generator) -> list[FeedbackRecord]:
    """Feedback for ``round(share * eligible)`` successful predictions, chosen at random."""
    eligible = [i for i, r in enumerate(records) if r.ok]
    k = int(round(share * len(eligible)))
    if k == 0:
        return []
    chosen = sorted(rng.choice(eligible, size=k, replace=False).tolist())
    delays = rng.uniform(*FEEDBACK_DELAY_S, size=k)
    out = []
    for i, delay in zip(chosen, delays):
        rec = records[i]
        when = min(rec.timestamp + timedelta(seconds=float(delay)), now)
        out.append(FeedbackRecord(rec.request_id, when, rec.user, labels[i], rec.label, source=REPLAY_SOURCE))
    return out
