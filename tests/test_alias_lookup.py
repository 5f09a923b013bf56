"""Serving reads @champion/@challenger without MLflow, and gets MlflowClient's answer."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nutrilearn.alias_lookup import AliasTarget, QuickAliasResolver, local_head_path, read_alias_targets
from nutrilearn.config import Settings
from nutrilearn.registry import admin
from nutrilearn.registry.jobs import ensure_version_one
from nutrilearn.registry.routing import AliasResolver
from nutrilearn.registry.store import Registry
from nutrilearn.vision.heads import LinearHead

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "alias-lookup-token"


def _expected(reg: Registry) -> dict[str, AliasTarget]:
    return {alias: AliasTarget(v, reg.version(v).run_id) for alias, v in reg.aliases().items()}


def _registry_with_a_challenger(settings: Settings) -> tuple[Registry, str]:
    reg = Registry(settings)
    ensure_version_one(settings, reg)
    head = LinearHead(("a", "b"), np.random.default_rng(0).normal(0, 0.1, (1280, 2)), np.zeros(2))
    with reg.run("nutrilearn-training", "alias-lookup test") as run_id:
        version = reg.register_head(head, run_id, {})
    admin.set_challenger(settings, version, TOKEN, "pytest", "shadow", reg)
    return reg, version


QUICK_LOOK = """
import json, sys
from nutrilearn.config import Settings
from nutrilearn.serving import current_models
served = current_models(Settings.from_env())
print(json.dumps({"champion": served.champion.info.version,
                  "challenger": served.challenger.info.version if served.challenger else None,
                  "head": type(served.challenger.head).__name__ if served.challenger else None,
                  "mlflow": "mlflow" in sys.modules}))
"""


def test_sqlite_lookup_matches_mlflow_and_needs_no_mlflow(home, monkeypatch):
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    settings = Settings.from_env()
    assert read_alias_targets(settings) == {}  # no store yet: nothing registered, nothing created
    assert not (home / "mlruns" / "mlflow.db").exists()
    reg, version = _registry_with_a_challenger(settings)
    assert read_alias_targets(settings) == _expected(reg)
    assert set(_expected(reg)) == {"champion", "challenger"}

    # The challenger's head is not downloaded yet: the quick resolver takes the MLflow path once.
    target = read_alias_targets(settings)["challenger"]
    assert not local_head_path(settings.models_dir, target).exists()
    quick, slow = QuickAliasResolver(settings).current(), AliasResolver(settings).current()
    assert (quick.champion.info, quick.challenger.info) == (slow.champion.info, slow.challenger.info)
    assert local_head_path(settings.models_dir, target).is_file()

    # From then on a new process answers without importing MLflow.
    done = subprocess.run([sys.executable, "-c", QUICK_LOOK], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"champion": "1", "challenger": version, "head": "LinearHead",
                                       "mlflow": False}

    # An alias move is seen on the next look.
    admin.set_challenger(settings, None, TOKEN, "pytest", "done", reg)
    resolver = QuickAliasResolver(settings)
    assert resolver.current().challenger is None and "challenger" not in read_alias_targets(settings)


def test_a_store_it_cannot_read_falls_back_to_mlflow(home):
    settings = Settings.from_env()
    ensure_version_one(settings)
    other = dataclasses.replace(settings, tracking_uri="postgresql://nobody@127.0.0.1:1/none")
    assert read_alias_targets(other) is None  # not sqlite, not http: MLflow's own client answers


@pytest.mark.slow
def test_rest_lookup_on_a_tracking_server_matches_mlflow(home, monkeypatch):
    from tracking_fixtures import MlflowServer

    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    server = MlflowServer(home, f"sqlite:///{home / 'server.db'}")
    server.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        settings = Settings.from_env()
        assert read_alias_targets(settings) == {}  # the model is not registered yet
        reg, _ = _registry_with_a_challenger(settings)
        assert read_alias_targets(settings) == _expected(reg)
        # A server that is down: no minutes of MLflow retries; the last known heads serve, with the reason.
        down = dataclasses.replace(settings, tracking_uri="http://127.0.0.1:9")  # nothing listens there
        with pytest.raises(ConnectionError, match="unreachable"):
            read_alias_targets(down)
        served = QuickAliasResolver(down).current()
        assert served.champion.info.version == "1" and "unreachable" in served.error
    finally:
        server.stop()
