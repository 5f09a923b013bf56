"""Serving ``@champion`` (and ``@challenger`` in shadow) without restarts.

``AliasResolver.current()`` answers which heads serve now. It asks the registry at most
every ``NUTRILEARN_ALIAS_REFRESH_S`` seconds (one query: the registered model's aliases,
in a background thread after the first look) and downloads a version's head once; an
alias move is therefore live within about that many seconds in every running app. If the registry cannot be reached, the last known heads go
on serving (and ``Served.error`` says why); with no registry at all (a fresh machine
before ``nutrilearn setup``), version 1, the ImageNet food head, serves.

``ServingAnalyzer`` is what ``nutrilearn.serving.build_analyzer`` returns: the same
``analyze`` as ``pipeline.Analyzer``, answering with the champion. When a challenger is
set, a share of requests (``NUTRILEARN_CHALLENGER_SHARE``, default all) also goes through
the challenger's head on the same backbone features (nearly free) and is logged as its
own record: ``model_version`` = the challenger's, ``model_alias`` = "challenger",
``request_id`` = the champion record's id + ``".challenger"`` (so feedback on a photo
scores both). The caller still gets exactly one (champion) record per photo.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nutrilearn.config import Settings
from nutrilearn.pipeline import Analyzer, ModelInfo, Photo, RecordSink
from nutrilearn.registry.config import RegistrySettings
from nutrilearn.tracking.records import SHADOW_SUFFIX, STATUS_OK, PredictionRecord

log = logging.getLogger(__name__)

CHALLENGER_SUFFIX = SHADOW_SUFFIX  # the records module's name for it


def shadowed_request_id(request_id: str) -> str:
    """The champion request a challenger record shadows (itself for a champion record)."""
    return request_id[: -len(CHALLENGER_SUFFIX)] if request_id.endswith(CHALLENGER_SUFFIX) else request_id


def in_challenger_share(request_id: str, share: float) -> bool:
    """Deterministic per request: the same request is always in or out."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    try:
        return int(request_id[:8], 16) / 0x1_0000_0000 < share
    except ValueError:
        return False


@dataclass(frozen=True)
class ServedHead:
    head: object
    info: ModelInfo


@dataclass(frozen=True)
class Served:
    champion: ServedHead
    challenger: ServedHead | None = None
    checked_at: float | None = None  # time.monotonic() of the last registry look; None: never
    error: str | None = None  # why the last look failed, if it did


def default_served() -> Served:
    from nutrilearn.vision.heads import ImageNetFoodHead

    return Served(ServedHead(ImageNetFoodHead(), ModelInfo()))


def registry_exists(settings: Settings) -> bool:
    """False for a sqlite store whose file is not there yet (nothing registered; do not create it)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        path = uri.split(":///", 1)[-1].split("?", 1)[0]
        return path in ("", ":memory:") or Path(path).is_file()
    return True


class AliasResolver:
    """Which heads serve now; cheap to call on every request (thread-safe)."""

    def __init__(self, settings: Settings, refresh_s: float | None = None):
        self.settings = settings
        self.refresh_s = RegistrySettings.from_env(settings).alias_refresh_s if refresh_s is None else refresh_s
        self._lock = threading.Lock()
        self._served = default_served()
        self._heads: dict[str, object] = {}
        self._registry = None
        self._refreshing = False

    def current(self, force: bool = False) -> Served:
        """The heads serving now. The first call (and ``force``) reads the registry; after
        that a stale answer is refreshed in a background thread, so a slow or unreachable
        tracking server never holds up a prediction."""
        with self._lock:
            now = time.monotonic()
            checked_at = self._served.checked_at
            if force or checked_at is None:
                self._served = self._look(now)
            elif now - checked_at >= self.refresh_s and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="nutrilearn-alias-refresh", daemon=True).start()
            return self._served

    def _refresh(self) -> None:
        try:
            served = self._look(time.monotonic())
            with self._lock:
                self._served = served
        finally:
            self._refreshing = False

    def _head(self, registry, version: str):
        if version not in self._heads:
            self._heads[version] = registry.load_head(version)
        return self._heads[version]

    def _look(self, now: float) -> Served:
        if not registry_exists(self.settings):
            return dataclasses.replace(self._served, checked_at=now, error=None)
        try:
            if self._registry is None:
                from nutrilearn.registry.store import Registry

                self._registry = Registry(self.settings)
            reg = self._registry
            aliases = reg.aliases()
            champion = self._served.champion
            if "champion" in aliases:
                version = aliases["champion"]
                champion = ServedHead(self._head(reg, version), ModelInfo(reg.name, version, "champion"))
            challenger = None
            version = aliases.get("challenger")
            if version is not None and version != champion.info.version:
                challenger = ServedHead(self._head(reg, version), ModelInfo(reg.name, version, "challenger"))
            if champion.info != self._served.champion.info:
                log.info("now serving %s version %s", champion.info.name, champion.info.version)
            return Served(champion, challenger, now, None)
        except Exception as exc:  # keep serving what we had; say why on the status line
            log.warning("could not read the model registry (%s: %s); serving version %s",
                        type(exc).__name__, exc, self._served.champion.info.version)
            return dataclasses.replace(self._served, checked_at=now, error=f"{type(exc).__name__}: {exc}")


class _FeatureTap:
    """The classifier, remembering the last batch's backbone features for the challenger."""

    def __init__(self, classifier):
        self.inner = classifier
        self.last = None

    def features(self, pixels):
        self.last = self.inner.features(pixels)
        return self.last

    def __getattr__(self, name):
        return getattr(self.inner, name)


def challenger_records(records: Sequence[PredictionRecord], feats, classifier, info: ModelInfo,
                       share: float) -> list[PredictionRecord]:
    """The challenger's records for a chunk's successful champion records (same photos,
    same backbone features: only the head runs again)."""
    from nutrilearn.vision.classifier import Features

    ok = [i for i, r in enumerate(records) if r.status == STATUS_OK and r.label is not None]
    if feats is None or len(ok) != len(feats.pooled):
        return []  # the model failed for this chunk: nothing to compare
    picked = [k for k, i in enumerate(ok) if in_challenger_share(records[i].request_id, share)]
    if not picked:
        return []
    t0 = time.perf_counter()
    preds = classifier.classify(Features(feats.logits[picked], feats.pooled[picked]))
    head_ms = (time.perf_counter() - t0) * 1000.0 / len(picked)
    out = []
    for k, pred in zip(picked, preds):
        rec = records[ok[k]]
        out.append(dataclasses.replace(
            rec, request_id=rec.request_id + CHALLENGER_SUFFIX, model_name=info.name, model_version=info.version,
            model_alias=info.alias, label=pred.label, confidence=pred.confidence, is_food=pred.is_food,
            top5_labels=[label for label, _ in pred.top5], top5_probs=[p for _, p in pred.top5],
            inference_ms=(rec.inference_ms or 0.0) + head_ms,
            total_ms=(rec.total_ms or 0.0) + head_ms,
            thumbnail=None))  # the champion's record holds the photo (monitoring.photos.photo_id)
    return out


class _ChunkAnalyzer(Analyzer):
    """One request's analyzer: a fixed champion (and challenger) for the whole call."""

    def __init__(self, classifier, served: Served, settings: Settings, sink, share: float):
        super().__init__(_FeatureTap(classifier.with_head(served.champion.head)), served.champion.info, settings, sink)
        self.challenger = None
        if served.challenger is not None:
            self.challenger = (classifier.with_head(served.challenger.head), served.challenger.info)
        self.share = share
        self.shadow: list[PredictionRecord] = []

    def _predict(self, prepared):
        self.classifier.last = None
        records = super()._predict(prepared)
        if self.challenger is not None:
            clf, info = self.challenger
            self.shadow.extend(challenger_records(records, self.classifier.last, clf, info, self.share))
        return records


class ServingAnalyzer:
    """``Analyzer``'s interface, serving whatever ``@champion`` (and ``@challenger``) is now."""

    def __init__(self, classifier, settings: Settings, sink: RecordSink | None = None,
                 resolver: AliasResolver | None = None, challenger_share: float | None = None):
        self.base = classifier
        self.settings = settings
        self.sink = sink
        self.resolver = resolver or AliasResolver(settings)
        self.challenger_share = (RegistrySettings.from_env(settings).challenger_share
                                 if challenger_share is None else challenger_share)
        self.last_challenger_records: list[PredictionRecord] = []

    @property
    def served(self) -> Served:
        return self.resolver.current()

    @property
    def model(self) -> ModelInfo:
        return self.served.champion.info

    @property
    def challenger(self) -> ModelInfo | None:
        ch = self.served.challenger
        return ch.info if ch is not None else None

    @property
    def classifier(self):
        return self.base.with_head(self.served.champion.head)

    def analyze(self, photos: Sequence[Photo], user: str, source: str = "app", batch_size: int = 32,
                progress=None, timestamps=None) -> list[PredictionRecord]:
        """One champion record per photo, in order (returned and sent to the sink); the
        challenger's records go to the sink only (and ``last_challenger_records``)."""
        run = _ChunkAnalyzer(self.base, self.served, self.settings, self.sink, self.challenger_share)
        records = run.analyze(photos, user, source, batch_size, progress, timestamps)
        if self.sink is not None:
            for record in run.shadow:
                self.sink.submit(record)
        self.last_challenger_records = run.shadow
        return records
