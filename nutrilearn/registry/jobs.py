"""The registry's jobs, shared by the CLI, the app and tests: register version 1, train a
version, evaluate a version. Each returns a plain dict (what ``--json`` prints)."""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from nutrilearn.config import Settings
from nutrilearn.answers import percent
from nutrilearn.registry import admin
from nutrilearn.registry.features import Dataset, Progress, load_dataset
from nutrilearn.registry.metrics import Evaluation, evaluate_head
from nutrilearn.registry.reports import evaluation_files, history_csv
from nutrilearn.registry.store import CHAMPION, EVALUATION_EXPERIMENT, METRIC_TAG_PREFIX, TRAINING_EXPERIMENT, Registry
from nutrilearn.registry.training import TrainConfig, train_linear_head

BUILTIN_TAG = "nutrilearn.builtin"
IMAGENET_TRAINING_DATA = "ImageNet-1k (packaged EfficientNet-Lite0 weights), restricted to its 46 food classes"


@dataclass
class Progresses:
    """Progress callbacks for the long steps (all optional)."""

    features: Progress | None = None
    epochs: Callable[[int, int], None] | None = None


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ensure_version_one(settings: Settings, registry: Registry | None = None) -> tuple[str, bool]:
    """Register the ImageNet food head as a version and make it champion if there is none.

    Idempotent: returns (its version, whether anything was created now).
    """
    from nutrilearn.vision.heads import ImageNetFoodHead

    reg = registry or Registry(settings)
    for info in reg.versions():
        if info.tags.get(BUILTIN_TAG) == ImageNetFoodHead.kind:
            created = admin.bootstrap_champion(settings, info.version, reg) is not None
            return info.version, created
    head = ImageNetFoodHead()
    with reg.run(TRAINING_EXPERIMENT, "imagenet-food (built in)", {"nutrilearn.job": "builtin"}) as run_id:
        reg.log_params(run_id, {"head": head.kind, "classes": len(head.labels), "training_data": IMAGENET_TRAINING_DATA})
        version = reg.register_head(head, run_id, {BUILTIN_TAG: head.kind,
                                                   "nutrilearn.training_data": IMAGENET_TRAINING_DATA},
                                    description="ImageNet's own classifier restricted to its 46 food classes.")
    admin.bootstrap_champion(settings, version, reg)
    return version, True


def _metric_tags(ev: Evaluation, data: Dataset, run_id: str) -> dict[str, str]:
    tags = {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in ev.summary().items()}
    return tags | {"eval.data": data.describe(), "eval.manifest": data.manifest_hash, "eval.run_id": run_id}


def _manifest(data: Dataset) -> str:
    rows = []
    for photo in data.photos:
        root = next((r for r in data.roots if photo.path.is_relative_to(r)), None)
        rows.append({"label": photo.label, "sha256": photo.sha256,
                     "path": str(photo.path.relative_to(root) if root else photo.path.name)})
    return json.dumps({"manifest_sha256": data.manifest_hash, "roots": [str(r) for r in data.roots], "photos": rows},
                      indent=0)


def _load(roots: Sequence[Path], classifier, settings: Settings, progress: Progress | None,
          flips: bool = False) -> Dataset:
    return load_dataset([Path(r) for r in roots], classifier, settings, progress, flips)


def train_version(
    settings: Settings,
    data: Sequence[Path],
    classifier,
    base: Sequence[Path] = (),
    eval_data: Sequence[Path] = (),
    config: TrainConfig = TrainConfig(),
    promote_if_better: bool = False,
    token: str | None = None,
    who: str | None = None,
    progress: Progresses = Progresses(),
    registry: Registry | None = None,
    allow_vocabulary_change: bool = False,
) -> dict:
    """Train a head on ``data`` (+ ``base`` folders, e.g. kept feedback photos), register it.

    Evaluation photos: ``eval_data`` if given, else the held-out validation split (then the
    head is not refitted on it, so those photos stay unseen). ``promote_if_better``
    promotes the new version only if it beats the champion on those same photos.
    """
    reg = registry or Registry(settings)
    who = who or default_user()
    started = time.perf_counter()
    train_ds = _load(list(data) + list(base), classifier, settings, progress.features, config.flip_augment)
    eval_ds = _load(eval_data, classifier, settings, None) if eval_data else None
    features_s = time.perf_counter() - started
    if eval_ds is None:
        config = TrainConfig(**{**config.__dict__, "refit_full": False})
    result = train_linear_head(train_ds.pooled, train_ds.labels, train_ds.pooled_flip, config, progress.epochs)
    if eval_ds is None:
        eval_ds = train_ds.subset(result.val_index)
        eval_ds.note = "held-out validation split of "
        eval_name = "validation split"
    else:
        eval_name = "evaluation data"
    ev = evaluate_head(result.head, eval_ds.labels, eval_ds.pooled, eval_ds.logits)
    train_s = time.perf_counter() - started

    with reg.run(TRAINING_EXPERIMENT, f"train linear head on {train_ds.manifest_hash[:12]}",
                 {"nutrilearn.job": "train", "who": who}) as run_id:
        reg.log_params(run_id, config.params() | {
            "data": " + ".join(str(Path(d)) for d in data), "base": " + ".join(str(Path(b)) for b in base),
            "eval_data": " + ".join(str(Path(e)) for e in eval_data) or "validation split",
            "photos": len(train_ds.photos), "classes": len(train_ds.classes), "skipped_photos": len(train_ds.skipped),
            "data_manifest_sha256": train_ds.manifest_hash, "best_epoch": result.best_epoch,
            "temperature": f"{result.temperature:.4g}"})
        reg.log_metric_series(run_id, [h.__dict__ for h in result.history])
        reg.log_metrics(run_id, {f"eval_{k}": v for k, v in ev.summary().items()} | {
            "training_seconds": train_s, "feature_seconds": features_s, "fit_seconds": result.seconds})
        files = evaluation_files(ev, f"new head ({eval_name})", {"eval_data": eval_ds.describe()})
        files |= {"history.csv": history_csv(result.history), "labels.json": json.dumps(list(result.head.labels)),
                  "data_manifest.json": _manifest(train_ds),
                  "class_weights.json": json.dumps(result.class_weight, indent=1)}
        reg.log_files(run_id, files)
        version = reg.register_head(result.head, run_id, {
            "nutrilearn.training_data": train_ds.describe(), "nutrilearn.data_manifest": train_ds.manifest_hash,
            "nutrilearn.trained_by": who} | _metric_tags(ev, eval_ds, run_id),
            description=f"Linear head on {train_ds.describe()}")

    out = {"version": version, "run_id": run_id, "eval_data": eval_ds.describe(), **ev.summary(),
           "training_seconds": round(train_s, 2), "feature_seconds": round(features_s, 2),
           "fit_seconds": round(result.seconds, 2), "best_epoch": result.best_epoch,
           "photos": len(train_ds.photos), "classes": list(train_ds.classes), "data_manifest": train_ds.manifest_hash,
           "skipped": [str(p) for p, _ in train_ds.skipped], "promoted": False}
    if promote_if_better:
        out |= _promote_if_better(settings, reg, version, ev, eval_ds, token, who, allow_vocabulary_change)
    return out


def _promote_if_better(settings, reg: Registry, version: str, ev: Evaluation, eval_ds: Dataset, token, who,
                       allow_vocabulary_change: bool = False) -> dict:
    champion = reg.alias_version(CHAMPION)
    out: dict = {"champion_before": champion}
    if champion is not None:
        champ_ev = evaluate_head(reg.load_head(champion), eval_ds.labels, eval_ds.pooled, eval_ds.logits)
        out["champion_accuracy"] = champ_ev.accuracy
        better = (ev.accuracy, ev.f1_macro) > (champ_ev.accuracy, champ_ev.f1_macro)
        verdict = (f"version {version} accuracy {percent(ev.accuracy)} vs champion {champion} {percent(champ_ev.accuracy)} "
                   f"on the same {ev.n} photos ({eval_ds.manifest_hash[:12]})")
    else:
        better, verdict = True, f"no champion yet; version {version} accuracy {percent(ev.accuracy)}"
    if not better:
        out["promotion"] = f"kept the champion: {verdict}"
        return out
    try:
        admin.promote(settings, version, token, who, f"--promote-if-better: {verdict}", reg,
                      allow_vocabulary_change=allow_vocabulary_change)
    except (admin.NotAuthorised, admin.VocabularyChange) as exc:
        out["promotion"] = f"better, but not promoted ({exc}): {verdict}"
        return out
    out |= {"promoted": True, "promotion": f"promoted: {verdict}"}
    return out


def evaluate_version(settings: Settings, version: str, data: Sequence[Path], classifier,
                     progress: Progress | None = None, registry: Registry | None = None, who: str | None = None) -> dict:
    """Score a registered version on labelled photos; log it and make it the version's figures."""
    reg = registry or Registry(settings)
    info = reg.version(version)  # unknown version: fail before any work
    head = reg.load_head(info.version)
    ds = _load(data, classifier, settings, progress)
    ev = evaluate_head(head, ds.labels, ds.pooled, ds.logits)
    with reg.run(EVALUATION_EXPERIMENT, f"evaluate v{info.version} on {ds.manifest_hash[:12]}",
                 {"nutrilearn.job": "evaluate", "version": info.version, "registered_model": reg.name,
                  "who": who or default_user()}) as run_id:
        reg.log_params(run_id, {"version": info.version, "data": ds.describe(),
                                "data_manifest_sha256": ds.manifest_hash, "photos": len(ds.photos)})
        reg.log_metrics(run_id, ev.summary())
        reg.log_files(run_id, evaluation_files(ev, f"version {info.version}", {"eval_data": ds.describe(),
                                                                                "version": info.version}))
    reg.set_version_tags(info.version, _metric_tags(ev, ds, run_id))
    return {"version": info.version, "run_id": run_id, "eval_data": ds.describe(), **ev.summary(),
            "per_class": ev.per_class, "skipped": [str(p) for p, _ in ds.skipped]}


def load_evaluation(settings: Settings, info, registry: Registry | None = None) -> dict | None:
    """The latest evaluation behind a version's figures (``evaluation.json``), or None."""
    run_id = info.tags.get("eval.run_id")
    if not run_id:
        return None
    reg = registry or Registry(settings)
    try:
        return reg.read_json_artifact(run_id, "evaluation.json")
    except Exception:
        return None


def compare_versions(settings: Settings, versions: Sequence[str], data: Sequence[Path], classifier,
                     progress: Progress | None = None, registry: Registry | None = None) -> dict:
    """Score versions on the same labelled photos (one feature pass): each one's vocabulary,
    coverage (share of photos whose true label it can produce, label relations applied) and
    metrics overall and on the labels every version can produce."""
    from nutrilearn.registry.metrics import compare_evaluations

    reg = registry or Registry(settings)
    infos = [reg.version(v) for v in versions]  # unknown version: fail before any work
    ds = _load(data, classifier, settings, progress)
    evaluations = {info.version: evaluate_head(reg.load_head(info.version), ds.labels, ds.pooled, ds.logits)
                   for info in infos}
    out = compare_evaluations(evaluations)
    return {"data": ds.describe(), "data_manifest": ds.manifest_hash, **out,
            "skipped": [str(p) for p, _ in ds.skipped]}
