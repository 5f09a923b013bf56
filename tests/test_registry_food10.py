"""Model versions on real photos: train on food10/train, evaluate on food10/test, serve the
champion with a challenger in shadow, and drive the Models page.

Backbone features are cached by photo hash under models/feature-cache, so after the first
run training takes seconds."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from nutrilearn.config import Settings
from tests.conftest import ROOT, image_bytes

TOKEN = "food10-admin"
PAGE = str(ROOT / "pages" / "models.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, classifier, food10):
    """A store with version 1 and a head trained on food10/train (+ a kept feedback folder),
    evaluated on food10/test and promoted because it beats version 1 there."""
    from nutrilearn.registry.config import RegistrySettings
    from nutrilearn.registry.feedback_store import keep_photo
    from nutrilearn.registry.jobs import ensure_version_one, train_version
    from nutrilearn.registry.store import Registry

    home = tmp_path_factory.mktemp("food10-home")
    (home / "mlruns").mkdir()
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                        models_dir=ROOT / "models", spool_dir=home / "mlruns" / "spool", admin_token=TOKEN)
    reg = Registry(settings)
    ensure_version_one(settings, reg)
    kept = RegistrySettings(keep_feedback_photos=True, feedback_dir=home / "kept")
    for i in range(3):  # what the Analyze page keeps when users confirm labels
        keep_photo(settings, f"{i:032x}", "apple_pie", image_bytes(mode="noise", fmt="JPEG", size=(300 + i, 280)), kept)
    out = train_version(settings, [food10 / "train"], classifier, base=[home / "kept"], eval_data=[food10 / "test"],
                        promote_if_better=True, token=TOKEN, who="pytest", registry=reg)
    return settings, reg, out


@pytest.mark.food10
def test_trained_head_reaches_078_on_food10_test(trained):
    settings, reg, out = trained
    assert out["accuracy"] >= 0.78, out
    assert out["top5_accuracy"] >= 0.95 and out["f1_macro"] >= 0.75 and out["ece"] < 0.15
    assert out["photos"] == 1003 and len(out["classes"]) == 10  # 1,000 photos + 3 kept feedback photos
    assert out["training_seconds"] < 180
    assert out["promoted"] and reg.alias_version("champion") == out["version"]
    assert out["champion_accuracy"] < out["accuracy"]


@pytest.mark.food10
def test_training_run_logs_what_the_issue_asks(trained):
    settings, reg, out = trained
    client = reg.client
    files = {f.path for f in client.list_artifacts(out["run_id"])} | {f.path for f in client.list_artifacts(out["run_id"], "head")}
    assert {"confusion_matrix.png", "confusion_matrix.csv", "per_class.csv", "reliability.png", "labels.json",
            "data_manifest.json", "history.csv", "evaluation.json", "head/head.npz", "head/labels.json"} <= files
    run = client.get_run(out["run_id"])
    assert run.data.params["data_manifest_sha256"] == out["data_manifest"]
    assert run.data.params["class_weights"] == "balanced" and run.data.params["flip_augment"] == "False"
    assert len(client.get_metric_history(out["run_id"], "val_accuracy")) >= 5
    info = reg.version(out["version"])
    assert info.metrics["accuracy"] == pytest.approx(out["accuracy"], abs=1e-5)
    assert "1003 photos" in info.tags["nutrilearn.training_data"]


@pytest.mark.food10
def test_evaluate_cli_prints_one_json_object(trained, classifier, monkeypatch, capsys):
    from nutrilearn import serving
    from nutrilearn.cli import main

    settings, reg, out = trained
    monkeypatch.setenv("NUTRILEARN_HOME", str(settings.home))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(settings.models_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(serving, "load_classifier", lambda s: classifier)
    test_dir = ROOT.parent / "shared" / "data" / "food10" / "test"
    for version in ("champion", "1"):
        assert main(["evaluate", "--version", version, "--data", str(test_dir), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert {"version", "accuracy", "f1_macro", "top5_accuracy", "log_loss", "ece", "per_class"} <= set(result)
    assert result["version"] == "1" and result["accuracy"] < 0.1  # ImageNet has no food10 labels but "burrito"
    assert reg.version(out["version"]).metrics["accuracy"] == pytest.approx(out["accuracy"], abs=1e-5)


@pytest.mark.food10
def test_serving_runs_the_challenger_in_shadow_on_the_same_photos(trained, classifier, food10):
    from nutrilearn.pipeline import Photo
    from nutrilearn.registry import admin
    from nutrilearn.registry.routing import AliasResolver, ServingAnalyzer

    settings, reg, out = trained
    admin.set_challenger(settings, "1", TOKEN, "pytest", "compare on live traffic", reg)
    sink = type("Sink", (), {"records": [], "submit": lambda self, r: self.records.append(r)})()
    analyzer = ServingAnalyzer(classifier, settings, sink, AliasResolver(settings, refresh_s=0), challenger_share=1.0)
    photos = [Photo(p.name, p.read_bytes()) for c in ("bibimbap", "baklava") for p in sorted((food10 / "test" / c).glob("*.jpg"))[:2]]
    records = analyzer.analyze(photos, user="pytest")
    assert [r.model_version for r in records] == [out["version"]] * 4
    assert {r.label for r in records} <= set(out["classes"]) and sum(r.label in ("bibimbap", "baklava") for r in records) >= 2
    shadow = [r for r in sink.records if r.model_alias == "challenger"]
    assert len(sink.records) == 8 and [r.request_id for r in shadow] == [r.request_id + ".challenger" for r in records]
    assert all(r.model_version == "1" and r.image_width == c.image_width for r, c in zip(shadow, records))
    assert not {r.label for r in shadow} & set(out["classes"])  # ImageNet's food labels: the challenger's head
    admin.set_challenger(settings, None, TOKEN, "pytest", "done comparing", reg)
    analyzer.resolver.current(force=True)  # other processes see it within NUTRILEARN_ALIAS_REFRESH_S
    sink.records.clear()
    analyzer.analyze(photos[:1], user="pytest")
    assert [r.model_alias for r in sink.records] == ["champion"]


@pytest.mark.food10
def test_models_page_shows_versions_compares_and_guards(trained, classifier, food10, monkeypatch):
    from nutrilearn.registry.jobs import evaluate_version

    settings, reg, out = trained
    if "eval.run_id" not in reg.version("1").tags:  # when run alone: the comparison needs both evaluated
        evaluate_version(settings, "1", [food10 / "test"], classifier, registry=reg)
    monkeypatch.setenv("NUTRILEARN_HOME", str(settings.home))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(settings.models_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NUTRILEARN_ADMIN_TOKEN", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["version"]) == [int(out["version"]), 1]
    assert table["accuracy"].iloc[0] >= 0.78 and table["aliases"].iloc[0] == "champion"
    assert "NUTRILEARN_ADMIN_TOKEN is not set" in " ".join(w.value for w in at.warning)
    assert all(b.disabled for b in at.button)
    assert [m.label for m in at.metric][:2] == ["Accuracy (B)", "Precision (B)"]  # champion (A) vs version 1 (B)
    assert len(at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")) >= 3  # per-class deltas + 2 confusions

    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    at.text_input(key="admin_token").input(TOKEN).run()
    assert not any(b.disabled for b in at.button if b.label == "Promote")
    at.text_input(key="rollback_why").input("page test rollback")
    next(b for b in at.button if b.label == "Roll back").click().run()
    assert not at.exception, at.exception
    assert reg.alias_version("champion") == "1"
    history = at.dataframe[-1].value
    assert history.iloc[0]["action"] == "rollback" and history.iloc[0]["why"] == "page test rollback"
