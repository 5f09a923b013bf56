"""The MLflow Model Registry side: versions, their heads and metrics, aliases and their history.

Layout in MLflow (same tracking URI as everything else):
- Registered model ``nutrilearn-food-classifier``. Every version's source is the ``head``
  artifact folder of the run that made it: ``head.npz`` (numpy, no pickle) and
  ``labels.json``. The backbone is shared and fixed; its weights' sha256 is a version tag.
- Version tags: ``nutrilearn.head_kind``, ``nutrilearn.backbone_sha256``,
  ``nutrilearn.training_data`` (folders, counts, manifest hash) and the latest evaluation
  (``metric.<name>``, ``eval.data``, ``eval.manifest``, ``eval.run_id``), so the versions
  table is one registry query.
- Experiment ``nutrilearn-training``: one run per trained version (params, per-epoch
  metrics, confusion matrix, per-class metrics, reliability diagram, labels, manifest).
- Experiment ``nutrilearn-evaluations``: one run per ``evaluate`` (``evaluation.json``).
- Experiment ``nutrilearn-registry``: one run per alias move (tags: alias, action,
  from, to, who, why, when). That is the audit trail the rollback reads.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from nutrilearn.config import Settings
from nutrilearn.pipeline import REGISTERED_MODEL_NAME

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
ALIASES = (CHAMPION, CHALLENGER)
TRAINING_EXPERIMENT = "nutrilearn-training"
EVALUATION_EXPERIMENT = "nutrilearn-evaluations"
REGISTRY_EXPERIMENT = "nutrilearn-registry"
METRIC_TAG_PREFIX = "metric."
# A version's vocabulary (the labels it can answer), JSON, on the version itself.
VOCABULARY_TAG = "nutrilearn.vocabulary"
_MAX_TAG_CHARS = 5000
# Alias actions recorded in the history.
PROMOTE, ROLLBACK, SET_CHALLENGER, CLEAR_CHALLENGER, BOOTSTRAP = (
    "promote", "rollback", "set-challenger", "clear-challenger", "bootstrap")


class RegistryError(RuntimeError):
    """A registry request that cannot be done (unknown version, nothing to roll back to...)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created: datetime
    aliases: tuple[str, ...]
    run_id: str
    source: str
    description: str
    tags: dict[str, str]

    @property
    def metrics(self) -> dict[str, float]:
        out = {}
        for key, value in self.tags.items():
            if key.startswith(METRIC_TAG_PREFIX):
                try:
                    out[key[len(METRIC_TAG_PREFIX):]] = float(value)
                except ValueError:
                    pass
        return out

    @property
    def head_kind(self) -> str:
        return self.tags.get("nutrilearn.head_kind", "")

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The labels this version can answer, from its vocabulary tag (None if not tagged:
        ``Registry.vocabulary`` reads the head then)."""
        raw = self.tags.get(VOCABULARY_TAG)
        if not raw:
            return None
        try:
            labels = json.loads(raw)
        except ValueError:
            return None
        return tuple(str(x) for x in labels) if isinstance(labels, list) else None


@dataclass(frozen=True)
class AliasEvent:
    """One alias move: who moved which alias from which version to which, when and why."""

    when: datetime
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    who: str
    why: str
    run_id: str = ""
    vocabulary: str = ""  # the vocabulary change a champion move accepted ("" when none)

    def as_row(self) -> dict[str, Any]:
        return {"when": self.when, "alias": self.alias, "action": self.action, "from": self.from_version or "",
                "to": self.to_version or "", "who": self.who, "why": self.why, "vocabulary": self.vocabulary}


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _ms_to_datetime(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000.0, tz=timezone.utc)


class Registry:
    """Thin, explicit wrapper over ``MlflowClient`` (no global MLflow state is touched)."""

    def __init__(self, settings: Settings, name: str = REGISTERED_MODEL_NAME):
        from mlflow import MlflowClient

        self.settings = settings
        self.name = name
        self.client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        self._experiments: dict[str, str] = {}

    # -- experiments and runs ---------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            from nutrilearn.tracking.store import artifact_location

            location = artifact_location(self.settings, self.settings.tracking_uri)
            location = f"{location}/{name}" if location else None
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except Exception:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str] | None = None) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags or {})
        return run.info.run_id

    @contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED if the block raises."""
        run_id = self.start_run(experiment, run_name, tags)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[start : start + 500])

    def log_metric_series(self, run_id: str, rows: list[dict[str, float]], step_key: str = "epoch") -> None:
        """Per-step metrics (e.g. one dict per epoch) in as few calls as possible."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(row[step_key])) for row in rows for k, v in row.items() if k != step_key]
        for start in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[start : start + 500])

    def log_files(self, run_id: str, files: dict[str, bytes | str], artifact_path: str | None = None) -> None:
        """Write ``{relative name: content}`` to a temporary folder and log it as artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for rel, content in files.items():
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content.encode() if isinstance(content, str) else content)
            self.client.log_artifacts(run_id, tmp, artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def read_json_artifact(self, run_id: str, path: str) -> Any:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp,
                                       tracking_uri=self.settings.tracking_uri)
            return json.loads(Path(local).read_text())

    # -- versions -----------------------------------------------------------------------
    def ensure_registered_model(self) -> None:
        try:
            self.client.get_registered_model(self.name)
        except Exception as exc:
            if not _is_missing(exc):
                raise
            try:
                self.client.create_registered_model(
                    self.name, description="NutriLearn food classifier: shared EfficientNet-Lite0 backbone + a head.")
            except Exception:
                self.client.get_registered_model(self.name)  # created meanwhile

    def register_head(self, head, run_id: str, tags: dict[str, str], description: str = "") -> str:
        """Log ``head`` under the run's ``head/`` folder and make it a new version; returns its number."""
        from nutrilearn.vision.weights import WEIGHTS_SHA256

        with tempfile.TemporaryDirectory() as tmp:
            head.save(Path(tmp) / "head.npz")
            (Path(tmp) / "labels.json").write_text(json.dumps(list(head.labels), indent=1))
            self.client.log_artifacts(run_id, tmp, "head")
        self.ensure_registered_model()
        source = self.client.get_run(run_id).info.artifact_uri.rstrip("/") + "/head"
        all_tags = {"nutrilearn.head_kind": head.kind, "nutrilearn.backbone_sha256": WEIGHTS_SHA256,
                    "nutrilearn.classes": str(len(head.labels))} | tags
        vocabulary = json.dumps(list(head.labels), separators=(",", ":"))
        if len(vocabulary) <= _MAX_TAG_CHARS:  # longer ones are read from the head
            all_tags[VOCABULARY_TAG] = vocabulary
        mv = self.client.create_model_version(self.name, source=source, run_id=run_id, tags=all_tags,
                                              description=description)
        return str(mv.version)

    def aliases(self) -> dict[str, str]:
        """``{alias: version}`` in one query ({} when nothing is registered yet)."""
        try:
            model = self.client.get_registered_model(self.name)
        except Exception as exc:
            if _is_missing(exc):
                return {}
            raise
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def alias_version(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def versions(self) -> list[VersionInfo]:
        """Every version, newest first, with its aliases."""
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except Exception as exc:
            if _is_missing(exc):
                return []
            raise
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases().items():
            by_version.setdefault(version, []).append(alias)
        out = [VersionInfo(str(mv.version), _ms_to_datetime(mv.creation_timestamp),
                           tuple(sorted(by_version.get(str(mv.version), []))), mv.run_id or "", mv.source or "",
                           mv.description or "", dict(mv.tags or {})) for mv in found]
        return sorted(out, key=lambda v: int(v.version), reverse=True)

    def version(self, version: str) -> VersionInfo:
        for info in self.versions():
            if info.version == str(version):
                return info
        raise RegistryError(f"{self.name} has no version {version}")

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def load_head(self, version: str):
        """The version's head, downloaded once into ``models/heads/`` (data only, no pickle)."""
        from nutrilearn.vision.heads import load_head

        info = self.version(version)
        local = Path(self.settings.models_dir) / "heads" / f"v{info.version}-{info.run_id[:12]}" / "head.npz"
        if not local.is_file():
            from mlflow.artifacts import download_artifacts

            local.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                path = download_artifacts(artifact_uri=info.source.rstrip("/") + "/head.npz", dst_path=tmp,
                                          tracking_uri=self.settings.tracking_uri)
                tmp_target = local.with_name("head.tmp.npz")
                shutil.copyfile(path, tmp_target)
                tmp_target.replace(local)
        return load_head(local)

    def vocabulary(self, version: str) -> tuple[str, ...]:
        """The labels ``version`` can answer: its vocabulary tag, or (older versions) its
        head's labels, written back as the tag so the next look is one query."""
        info = self.version(version)
        if info.classes is not None:
            return info.classes
        labels = tuple(self.load_head(info.version).labels)
        raw = json.dumps(list(labels), separators=(",", ":"))
        if len(raw) <= _MAX_TAG_CHARS:
            try:
                self.set_version_tags(info.version, {VOCABULARY_TAG: raw})
            except Exception:  # a read-only store still answers
                pass
        return labels

    # -- aliases and their history -------------------------------------------------------
    def move_alias(self, alias: str, version: str | None, who: str, why: str, action: str,
                   vocabulary: str = "") -> AliasEvent:
        """Point ``alias`` at ``version`` (None: remove it) and record the move."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; use one of {', '.join(ALIASES)}")
        if version is not None:
            self.version(version)  # raises for an unknown version
        before = self.alias_version(alias)
        if version is None:
            if before is not None:
                self.client.delete_registered_model_alias(self.name, alias)
        else:
            self.client.set_registered_model_alias(self.name, alias, str(version))
        when = datetime.now(timezone.utc)
        event = AliasEvent(when, alias, action, before, None if version is None else str(version), who or "unknown", why,
                           vocabulary=vocabulary)
        tags = {"nutrilearn.event": "alias_move", "alias": alias, "action": action, "from_version": before or "",
                "to_version": event.to_version or "", "who": event.who, "why": why[:4000],
                "when": when.isoformat(timespec="microseconds"), "registered_model": self.name}
        if vocabulary:
            tags["vocabulary_change"] = vocabulary[:4000]
        with self.run(REGISTRY_EXPERIMENT, f"{action} {alias}: {before or '-'} -> {event.to_version or '-'}",
                      tags) as run_id:
            pass
        return AliasEvent(**{**event.__dict__, "run_id": run_id})

    def history(self, max_results: int = 1000) -> list[AliasEvent]:
        """Alias moves of this registered model, oldest first."""
        exp = self.client.get_experiment_by_name(REGISTRY_EXPERIMENT)
        if exp is None:
            return []
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`nutrilearn.event` = 'alias_move' and tags.registered_model = '{self.name}'",
            max_results=max_results)
        events = []
        for run in runs:
            t = run.data.tags
            try:
                when = datetime.fromisoformat(t["when"])
            except (KeyError, ValueError):
                when = _ms_to_datetime(run.info.start_time)
            events.append(AliasEvent(when, t.get("alias", ""), t.get("action", ""), t.get("from_version") or None,
                                     t.get("to_version") or None, t.get("who", ""), t.get("why", ""), run.info.run_id,
                                     t.get("vocabulary_change", "")))
        return sorted(events, key=lambda e: e.when)

    def previous_champion(self, events: list[AliasEvent] | None = None) -> str | None:
        """The version a rollback would restore: promotions push the old champion on a
        stack, rollbacks pop it, so repeated rollbacks walk further back. ``events``: a
        ``history()`` already read."""
        stack: list[str] = []
        for event in self.history() if events is None else events:
            if event.alias != CHAMPION:
                continue
            if event.action == ROLLBACK:
                if stack:
                    stack.pop()
            elif event.from_version and event.from_version != event.to_version:
                stack.append(event.from_version)
        return stack[-1] if stack else None
