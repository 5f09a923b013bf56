"""Which versions ``@champion`` and ``@challenger`` are, read without importing MLflow.

Why: importing MLflow and opening its store costs 2-3 s on these machines, longer than a
whole ``nutrilearn predict`` of one photo may take (2.5 s). The two facts serving needs
per alias, the version and the run that made it (which names the head's folder under
``models/heads/``), are one small query:

- a ``sqlite:`` store: a read-only SQL query on MLflow's own tables
  (``registered_model_aliases`` joined with ``model_versions``; MLflow is pinned, and
  tests/test_alias_lookup.py checks the answer against ``MlflowClient``'s);
- an ``http(s):`` tracking server: MLflow's public REST API (``registered-models/get``,
  ``model-versions/get``).

Anything else (another store, credentials in the environment, a schema this does not
know, a head not downloaded yet) answers None, and the caller takes the MLflow path. A
tracking server that cannot be reached raises ``ConnectionError`` at once: MLflow's own
client would retry it for minutes, so serving keeps what it had and says why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nutrilearn.config import Settings
from nutrilearn.pipeline import REGISTERED_MODEL_NAME, ModelInfo
from nutrilearn.registry.routing import AliasResolver, Served, ServedHead, registry_exists

log = logging.getLogger(__name__)

SERVED_ALIASES = ("champion", "challenger")
_HTTP_TIMEOUT_S = 3.0
_AUTH_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclass(frozen=True)
class AliasTarget:
    version: str
    run_id: str


def local_head_path(models_dir: Path, target: AliasTarget) -> Path:
    """Where ``Registry.load_head`` keeps a version's downloaded head."""
    return Path(models_dir) / "heads" / f"v{target.version}-{target.run_id[:12]}" / "head.npz"


def _sqlite_path(uri: str) -> str | None:
    path = uri.split(":///", 1)[-1].split("?", 1)[0] if uri.startswith("sqlite:///") else None
    return path if path and path != ":memory:" else None


def _from_sqlite(path: str, name: str) -> dict[str, AliasTarget] | None:
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute(
            "SELECT a.alias, a.version, v.run_id FROM registered_model_aliases a "
            "JOIN model_versions v ON v.name = a.name AND v.version = a.version AND v.workspace = a.workspace "
            "WHERE a.name = ? AND a.workspace = 'default'", (name,)).fetchall()
    except sqlite3.Error as exc:  # not the schema we know: let MLflow answer
        log.debug("alias lookup in %s failed: %s", path, exc)
        return None
    finally:
        conn.close()
    return {alias: AliasTarget(str(version), run_id or "") for alias, version, run_id in rows}


def _get_json(base: str, endpoint: str, params: dict[str, str]) -> dict | None:
    url = f"{base.rstrip('/')}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        return None
    except ValueError:
        return None
    except OSError as exc:  # refused, timed out, no route: the server is down
        raise ConnectionError(f"tracking server {base} unreachable: {getattr(exc, 'reason', exc)}") from exc


def _from_rest(uri: str, name: str) -> dict[str, AliasTarget] | None:
    model = _get_json(uri, "registered-models/get", {"name": name})
    if model is None:
        return None
    out = {}
    for item in (model.get("registered_model") or {}).get("aliases") or []:
        version = str(item.get("version", ""))
        mv = _get_json(uri, "model-versions/get", {"name": name, "version": version})
        run_id = ((mv or {}).get("model_version") or {}).get("run_id")
        if not run_id:
            return None
        out[str(item.get("alias"))] = AliasTarget(version, run_id)
    return out


def read_alias_targets(settings: Settings, name: str = REGISTERED_MODEL_NAME) -> dict[str, AliasTarget] | None:
    """``{alias: AliasTarget}`` ({} when nothing is registered); None: ask MLflow instead.

    Raises ``ConnectionError`` when a tracking server does not answer."""
    uri = settings.tracking_uri
    path = _sqlite_path(uri)
    if path is not None:
        return _from_sqlite(path, name) if Path(path).is_file() else {}
    if uri.startswith(("http://", "https://")) and not any(os.environ.get(v) for v in _AUTH_VARIABLES):
        return _from_rest(uri, name)
    return None


class QuickAliasResolver(AliasResolver):
    """``AliasResolver`` whose looks skip MLflow when the answer is at hand (see the module)."""

    def _look(self, now: float) -> Served:
        if not registry_exists(self.settings):
            return super()._look(now)
        try:
            targets = read_alias_targets(self.settings)
        except ConnectionError as exc:  # keep serving what we had; say why on the status line
            log.warning("%s; serving version %s", exc, self._served.champion.info.version)
            return dataclasses.replace(self._served, checked_at=now, error=str(exc))
        if targets is None:
            return super()._look(now)
        try:
            heads = {alias: self._local_head(targets[alias]) for alias in SERVED_ALIASES if alias in targets}
        except FileNotFoundError:  # a head not downloaded yet: MLflow fetches it
            return super()._look(now)
        champion = self._served.champion
        if "champion" in heads:
            champion = ServedHead(heads["champion"], ModelInfo(REGISTERED_MODEL_NAME, targets["champion"].version,
                                                               "champion"))
        challenger = None
        if "challenger" in heads and targets["challenger"].version != champion.info.version:
            challenger = ServedHead(heads["challenger"], ModelInfo(REGISTERED_MODEL_NAME,
                                                                   targets["challenger"].version, "challenger"))
        if champion.info != self._served.champion.info:
            log.info("now serving %s version %s", champion.info.name, champion.info.version)
        return Served(champion, challenger, now, None)

    def _local_head(self, target: AliasTarget):
        key = target.version
        if key not in self._heads:
            from nutrilearn.vision.heads import load_head

            path = local_head_path(self.settings.models_dir, target)
            if not path.is_file():
                raise FileNotFoundError(path)
            self._heads[key] = load_head(path)
        return self._heads[key]
