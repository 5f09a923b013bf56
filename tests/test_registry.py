"""Model versions without the backbone: training and metrics on synthetic features, and the
registry end to end on a local sqlite store (register, promote, roll back, guards, serving)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from nutrilearn.config import Settings
from nutrilearn.registry import admin
from nutrilearn.registry.config import RegistrySettings
from nutrilearn.registry.metrics import evaluate_head, expected_calibration_error
from nutrilearn.registry.training import TrainConfig, stratified_split, train_linear_head
from nutrilearn.vision.heads import ImageNetFoodHead, LinearHead, load_head
from nutrilearn.vision.vocabulary import FOOD_INDICES
from tests.conftest import image_bytes

TOKEN = "s3cret-token"


def _blobs(n_per_class=40, k=3, dim=16, seed=0, spread=1.0):
    """Separable Gaussian blobs in feature space + ImageNet logits that say "food"."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, dim))
    x = np.concatenate([centres[c] + spread * rng.normal(size=(n_per_class, dim)) for c in range(k)])
    labels = [f"food_{c}" for c in range(k) for _ in range(n_per_class)]
    logits = np.zeros((len(labels), 1000))
    logits[:, FOOD_INDICES[0]] = 10.0  # the not-food rule lets every row through
    return x, labels, logits


# -- training and metrics ------------------------------------------------------------------------

def test_stratified_split_holds_out_every_class():
    y = np.array([0] * 20 + [1] * 10 + [2] * 2)
    train, val = stratified_split(y, 0.2, seed=1)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(y)))
    assert {int(c): int((y[val] == c).sum()) for c in (0, 1, 2)} == {0: 4, 1: 2, 2: 1}


def test_linear_head_learns_separable_classes_and_folds_standardisation():
    x, labels, logits = _blobs()
    result = train_linear_head(x, labels, x + 0.01, TrainConfig(max_epochs=60, patience=5))
    assert result.head.labels == ("food_0", "food_1", "food_2")
    assert result.history and result.best_epoch >= 1 and result.temperature > 0
    ev = evaluate_head(result.head, labels, x, logits)  # raw (unstandardised) features in
    assert ev.accuracy > 0.97 and ev.top5_accuracy == 1.0
    assert set(result.class_weight) == set(result.head.labels)


def test_early_stopping_stops_before_max_epochs():
    x, labels, _ = _blobs(spread=4.0)  # overlapping: validation loss turns up
    result = train_linear_head(x, labels, None, TrainConfig(max_epochs=400, patience=3, learning_rate=0.05,
                                                            l2=0.0, refit_full=False))
    assert len(result.history) < 400
    assert result.best_epoch == min(result.history, key=lambda h: h.val_loss).epoch


def test_metrics_by_hand():
    head = LinearHead(("a", "b"), np.eye(2), np.zeros(2))
    pooled = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 0.0]])
    logits = np.zeros((4, 1000))
    logits[:, FOOD_INDICES[0]] = 10.0
    ev = evaluate_head(head, ["a", "b", "b", "c"], pooled, logits)
    assert ev.accuracy == pytest.approx(0.5)  # a right, b right, b wrong, unknown "c" wrong
    assert ev.labels == ["a", "b", "c"]
    assert ev.confusion[1] == [1, 1, 0, 0] and ev.confusion[2] == [1, 0, 0, 0]  # argmax ties pick "a"
    assert ev.per_class[0] == {"label": "a", "precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1}
    p_true = [math.exp(4) / (math.exp(4) + 1), math.exp(4) / (math.exp(4) + 1), 1 / (math.exp(4) + 1), 1e-15]
    assert ev.log_loss == pytest.approx(-np.mean(np.log(p_true)))
    assert ev.top5_accuracy == pytest.approx(0.75)


def test_not_food_rule_applies_in_evaluation():
    head = LinearHead(("a", "b"), np.eye(2), np.zeros(2))
    logits = np.zeros((2, 1000))
    logits[:, 0] = 20.0  # tench: not food at all
    ev = evaluate_head(head, ["a", "a"], np.array([[4.0, 0.0], [4.0, 0.0]]), logits)
    assert ev.accuracy == 0.0 and ev.not_food_rate == 1.0


def test_ece_of_calibrated_and_overconfident_predictions():
    conf = np.full(100, 0.75)
    assert expected_calibration_error(conf, np.arange(100) < 75)[0] == pytest.approx(0.0)
    ece, table = expected_calibration_error(np.full(10, 0.95), np.zeros(10, bool))
    assert ece == pytest.approx(0.95) and sum(b["count"] for b in table) == 10


# -- feedback photos and live figures ---------------------------------------------------------------

def test_keep_photo_only_when_enabled_and_moves_on_relabel(tmp_path):
    settings = Settings(home=tmp_path)
    rid = "ab" * 16
    off = RegistrySettings(feedback_dir=tmp_path / "kept")
    from nutrilearn.registry.feedback_store import keep_photo, kept_counts

    assert keep_photo(settings, rid, "apple_pie", image_bytes(fmt="JPEG"), off) is None
    on = RegistrySettings(keep_feedback_photos=True, feedback_dir=tmp_path / "kept")
    first = keep_photo(settings, rid, "apple_pie", image_bytes(fmt="JPEG"), on)
    assert first == tmp_path / "kept" / "apple_pie" / f"{rid}.jpg" and first.is_file()
    second = keep_photo(settings, rid, "baklava", image_bytes(fmt="PNG"), on)
    assert not first.exists() and second.name == f"{rid}.png"
    assert kept_counts(settings, on) == {"apple_pie": 0, "baklava": 1}
    for label, request_id, data in (("../etc", rid, image_bytes()), ("not_food", rid, image_bytes()),
                                    ("apple_pie", "../x", image_bytes()), ("apple_pie", rid, b"text")):
        with pytest.raises(ValueError):
            keep_photo(settings, request_id, label, data, on)


def test_live_figures_join_feedback_for_champion_and_challenger():
    from nutrilearn.registry.live import live_figures

    preds = pd.DataFrame({
        "request_id": ["r1", "r2", "r3", "r1.challenger", "r2.challenger"],
        "model_version": ["1", "1", "1", "2", "2"], "status": ["ok", "ok", "error", "ok", "ok"],
        "label": ["a", "b", None, "a", "a"], "confidence": [0.9, 0.5, None, 0.8, 0.6],
        "source": ["app"] * 5,
    })
    feedback = pd.DataFrame({"request_id": ["r1", "r2"], "label": ["a", "a"]})
    out = live_figures(preds, feedback).set_index("model_version")
    assert out.loc["1", "live_predictions"] == 3 and out.loc["1", "mean_confidence"] == pytest.approx(0.7)
    assert out.loc["1", "realized_accuracy"] == pytest.approx(0.5)
    assert out.loc["2", "realized_accuracy"] == pytest.approx(1.0) and out.loc["2", "with_feedback"] == 2


def test_challenger_share_is_deterministic():
    from nutrilearn.registry.routing import in_challenger_share, shadowed_request_id

    ids = [f"{i:08x}" + "0" * 24 for i in range(0, 2**32, 2**24)]
    picked = [in_challenger_share(r, 0.25) for r in ids]
    assert sum(picked) == 64 and picked == [in_challenger_share(r, 0.25) for r in ids]
    assert all(in_challenger_share(r, 1.0) for r in ids) and not any(in_challenger_share(r, 0.0) for r in ids)
    assert shadowed_request_id("abc.challenger") == "abc" and shadowed_request_id("abc") == "abc"


# -- the registry on a local store ------------------------------------------------------------------

@pytest.fixture(scope="module")
def _module_store(tmp_path_factory):
    """One sqlite store for this module (creating one costs ~5 s), with version 1 registered."""
    from nutrilearn.registry.jobs import ensure_version_one
    from nutrilearn.registry.store import Registry

    home = tmp_path_factory.mktemp("registry-home")
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                        models_dir=home / "models", admin_token=TOKEN)
    (home / "mlruns").mkdir()
    reg = Registry(settings)
    assert ensure_version_one(settings, reg) == ("1", True)
    return settings, reg


@pytest.fixture
def store(_module_store):
    """The module's store as every test expects it, whatever ran before: version 1 is
    champion and there is no challenger (tests must pass alone and in any order)."""
    settings, reg = _module_store
    if reg.alias_version("challenger") is not None:
        reg.move_alias("challenger", None, "tests", "reset between tests", "clear-challenger")
    if reg.alias_version("champion") != "1":
        reg.move_alias("champion", "1", "tests", "reset between tests", "reset")
    return settings, reg


def _register_linear(reg, seed: int) -> str:
    rng = np.random.default_rng(seed)
    head = LinearHead(("a", "b"), rng.normal(size=(1280, 2)), rng.normal(size=2))
    with reg.run("nutrilearn-training", f"test head {seed}") as run_id:
        return reg.register_head(head, run_id, {"nutrilearn.training_data": f"synthetic {seed}"})


def test_version_one_is_champion_and_setup_is_idempotent(store):
    from nutrilearn.registry.jobs import ensure_version_one

    settings, reg = store
    assert ensure_version_one(settings, reg) == ("1", False)
    v1 = reg.version("1")
    assert v1.head_kind == "imagenet-food" and len(v1.tags["nutrilearn.backbone_sha256"]) == 64
    assert isinstance(reg.load_head("1"), ImageNetFoodHead)
    assert reg.alias_version("champion") == "1"
    assert [e.action for e in reg.history()][:1] == ["bootstrap"]


def test_guarded_actions_are_refused_without_the_token(store):
    settings, reg = store
    v = _register_linear(reg, 1)
    no_token_configured = Settings(home=settings.home, tracking_uri=settings.tracking_uri, models_dir=settings.models_dir)
    for cfg, token in ((settings, None), (settings, "wrong"), (no_token_configured, TOKEN), (no_token_configured, None)):
        with pytest.raises(admin.NotAuthorised):
            admin.promote(cfg, v, token, "mallory", "because", reg)
        with pytest.raises(admin.NotAuthorised):
            admin.set_challenger(cfg, v, token, "mallory", "because", reg)
        with pytest.raises(admin.NotAuthorised):
            admin.rollback(cfg, token, "mallory", "because", reg)
    assert reg.alias_version("champion") == "1" and reg.alias_version("challenger") is None
    assert "NUTRILEARN_ADMIN_TOKEN is not set" in admin.admin_status(no_token_configured, TOKEN)[1]
    with pytest.raises(Exception, match="say why"):
        admin.promote(settings, v, TOKEN, "alice", "  ", reg)


def test_promote_rollback_and_serving_follow_the_alias(store):
    from nutrilearn.registry.routing import AliasResolver
    from nutrilearn.registry.store import RegistryError

    settings, reg = store
    resolver = AliasResolver(settings, refresh_s=3600)
    assert resolver.current().champion.info.version == reg.alias_version("champion")
    start = reg.alias_version("champion")
    v2, v3 = _register_linear(reg, 2), _register_linear(reg, 3)

    admin.promote(settings, v2, TOKEN, "alice", "better on test", reg)
    admin.set_challenger(settings, v3, TOKEN, "alice", "shadow it", reg)
    assert resolver.current().champion.info.version == start  # cached until the refresh interval
    served = resolver.current(force=True)
    assert (served.champion.info.version, served.challenger.info.version) == (v2, v3)
    assert isinstance(served.champion.head, LinearHead) and served.challenger.info.alias == "challenger"

    admin.promote(settings, v3, TOKEN, "bob", "even better", reg)  # the challenger becomes champion
    assert reg.aliases() == {"champion": v3}
    admin.rollback(settings, TOKEN, "carol", "v3 misbehaves", reg)
    assert reg.alias_version("champion") == v2
    admin.rollback(settings, TOKEN, "carol", "v2 too", reg)
    assert reg.alias_version("champion") == start
    assert resolver.current(force=True).champion.info.version == start  # the previous champion serves again

    moves = [(e.alias, e.action, e.from_version, e.to_version, e.who) for e in reg.history()]
    assert moves[-6:] == [("champion", "promote", start, v2, "alice"), ("challenger", "set-challenger", None, v3, "alice"),
                          ("champion", "promote", v2, v3, "bob"), ("challenger", "clear-challenger", v3, None, "bob"),
                          ("champion", "rollback", v3, v2, "carol"), ("champion", "rollback", v2, start, "carol")]
    assert reg.history()[-1].why == "v2 too"
    with pytest.raises(RegistryError):
        admin.promote(settings, "999", TOKEN, "alice", "no such version", reg)


def test_resolver_refreshes_in_the_background(store):
    import time

    from nutrilearn.registry.routing import AliasResolver

    settings, reg = store
    resolver = AliasResolver(settings, refresh_s=0.05)
    first = resolver.current()
    looks = []
    resolver._look = lambda now: looks.append(now) or first.__class__(first.champion, None, now, "looked")
    time.sleep(0.1)
    assert resolver.current() is first  # stale, but answered at once
    for _ in range(100):
        if resolver.current().error == "looked":
            break
        time.sleep(0.02)
    assert resolver.current().error == "looked" and len(looks) >= 1


def test_resolver_keeps_serving_when_the_store_is_unreachable(store, tmp_path):
    from nutrilearn.registry.routing import AliasResolver

    settings, reg = store
    resolver = AliasResolver(settings, refresh_s=0)
    good = resolver.current().champion.info
    resolver._registry = type("Broken", (), {"aliases": lambda self: (_ for _ in ()).throw(ConnectionError("down"))})()
    served = resolver.current(force=True)
    assert served.champion.info == good and "down" in served.error
    fresh = AliasResolver(Settings(home=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'none.db'}"), refresh_s=0)
    assert fresh.current().champion.info.version == "1" and not (tmp_path / "none.db").exists()


def test_head_files_hold_no_pickle(store):
    settings, reg = store
    version = _register_linear(reg, 4)
    head = reg.load_head(version)
    path = next((settings.models_dir / "heads").glob(f"v{version}-*/head.npz"))
    with np.load(path, allow_pickle=False) as data:
        assert {k: data[k].dtype.kind for k in data.files} == {"kind": "U", "labels": "U", "weight": "f", "bias": "f"}
    assert load_head(path).labels == head.labels == ("a", "b")


def test_cli_versions_and_refused_promote(store, monkeypatch, capsys):
    from nutrilearn.cli import main

    settings, reg = store
    version = _register_linear(reg, 5)  # its own version: never one another test happened to register
    monkeypatch.setenv("NUTRILEARN_HOME", str(settings.home))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(settings.models_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NUTRILEARN_ADMIN_TOKEN", raising=False)
    assert main(["versions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["versions"]
    assert rows[-1]["version"] == "1" and rows[-1]["training_data"].startswith("ImageNet-1k")
    assert main(["promote", version, "--why", "try"]) == 3
    assert "NUTRILEARN_ADMIN_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    assert main(["set-challenger", version, "--why", "cli test", "--who", "dana", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to"] == version
    assert main(["versions", "--history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["history"][-1]["who"] == "dana"


class _ColourBackbone:
    """Stands in for the backbone (no TensorFlow): pooled features from the mean colour."""

    def features(self, pixels):
        from types import SimpleNamespace

        mean = np.asarray(pixels, dtype=np.float64).mean(axis=(1, 2)) / 255.0
        pooled = np.tile(mean, (1, 1280 // 3 + 1))[:, :1280]
        logits = np.zeros((len(pixels), 1000))
        logits[:, FOOD_INDICES[0]] = 10.0
        return SimpleNamespace(pooled=pooled.astype(np.float32), logits=logits.astype(np.float32))


def test_cli_train_without_eval_data_scores_a_held_out_split(store, tmp_path, monkeypatch, capsys):
    from nutrilearn import serving
    from nutrilearn.cli import main

    settings, reg = store
    rng = np.random.default_rng(0)
    for label, colour in (("red_food", (200, 30, 30)), ("green_food", (30, 200, 30)), ("blue_food", (30, 30, 200))):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            shade = tuple(int(c + rng.integers(-20, 20)) for c in colour)
            (tmp_path / "data" / label / f"{i}.png").write_bytes(image_bytes(color=shade))
    (tmp_path / "data" / "red_food" / "broken.jpg").write_bytes(b"not a photo")
    monkeypatch.setenv("NUTRILEARN_HOME", str(settings.home))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(settings.models_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NUTRILEARN_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(serving, "load_classifier", lambda s: _ColourBackbone())
    assert main(["train", "--data", str(tmp_path / "data"), "--promote-if-better", "--max-epochs", "40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval_data"].startswith("held-out validation split of ") and out["n"] == 6
    assert out["accuracy"] == 1.0 and out["photos"] == 36 and len(out["skipped"]) == 1
    assert not out["promoted"] and "NUTRILEARN_ADMIN_TOKEN is not set" in out["promotion"]
    assert reg.alias_version("champion") != out["version"]
    assert reg.version(out["version"]).tags["eval.data"].startswith("held-out validation split of ")


def test_models_page_shows_a_failed_evaluation_and_reads_it_again(store, monkeypatch):
    """A failed read of evaluation.json is shown as failed (why, what to do) and is not
    cached: once the artifact is readable, the next run shows the comparison."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    settings, reg = store
    version = _register_linear(reg, 6)
    with reg.run("nutrilearn-evaluations", "evaluation written later") as run_id:
        pass  # no evaluation.json yet: reading it fails
    reg.set_version_tags(version, {"eval.run_id": run_id})
    monkeypatch.setenv("NUTRILEARN_HOME", str(settings.home))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(settings.models_dir))
    for var in ("MLFLOW_TRACKING_URI", "NUTRILEARN_ADMIN_TOKEN", "NUTRILEARN_SPOOL_DIR", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120)
    at.session_state["cmp_a"] = at.session_state["cmp_b"] = version
    at.run()
    assert not at.exception, at.exception
    failed = [e.value for e in at.error if f"Could not read the evaluation of version {version}" in e.value]
    assert failed and run_id in failed[0] and f"nutrilearn evaluate --version {version}" in failed[0]
    assert not any("no evaluation yet" in i.value for i in at.info)  # failed is not the same as missing

    x, labels, logits = _blobs(k=2)
    head = LinearHead(("food_0", "food_1"), np.zeros((16, 2)), np.zeros(2))
    reg.log_files(run_id, {"evaluation.json": json.dumps(evaluate_head(head, labels, x, logits).to_dict(),
                                                          default=str)})
    at.button(key="models_eval_retry").click().run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error if "Could not read the evaluation" in e.value]
    assert any(m.label.endswith("(B)") for m in at.metric)  # the comparison is drawn
