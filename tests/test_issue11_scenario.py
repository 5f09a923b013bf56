"""Issue 11's scenario on a real store: every figure knows which model said it.

Version 1 (ImageNet's 46 foods) serves replayed traffic; version 2 is trained on
food10/train (10 foods); promoting it is refused (it cannot name foods users were given)
until ``--allow-vocabulary-change``; version 1 becomes the challenger; more traffic. Then
the CLI and every page must say what really happened: which version served, which answered
in shadow, what each can name, and that the output drift is the model change.

The features of food10 are cached by photo hash under models/feature-cache, so after the
first run training is quick. One store for the whole module (built once).
"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.issue11_store import N_AFTER, N_BEFORE, TOKEN

PAGES = ROOT / "pages"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    from nutrilearn.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def scenario(issue11_store):
    return issue11_store


@pytest.fixture
def env(scenario, monkeypatch, classifier):
    from nutrilearn import serving

    monkeypatch.setenv("NUTRILEARN_HOME", str(scenario["home"]))
    monkeypatch.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    for var in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR", "NUTRILEARN_UNSURE_BELOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(serving, "load_classifier", lambda *a, **k: classifier)
    return scenario


# ------------------------------------------------------------------------------ the CLI

@pytest.mark.food10
def test_promotion_is_refused_until_the_vocabulary_change_is_allowed(env):
    code, out, err = env["said"]["refused"]
    assert code == 2, (out, err)
    assert "cannot name" in err and "Burrito" in err and "%" in err and "--allow-vocabulary-change" in err
    code, out, err = env["said"]["promoted"]
    assert code == 0, err
    code, out_eval, err = env["said"]["evaluated"]
    assert code == 0, err
    evaluated = json.loads(out_eval)
    assert evaluated["coverage"] == pytest.approx(0.1) and evaluated["accuracy"] > 0.0  # burrito counts
    moved = json.loads(out)
    assert moved["to"] == env["v2"] and moved["vocabulary"].startswith("accepted: 46 labels of version 1")
    history = env["reg"].history()
    promote = [e for e in history if e.action == "promote"]
    assert len(promote) == 1 and "burrito" in promote[0].vocabulary
    assert env["reg"].aliases() == {"champion": env["v2"], "challenger": "1"}


@pytest.mark.food10
def test_versions_json_lists_each_vocabulary(env, capsys):
    code, out, _ = _cli(capsys, "versions", "--json")
    assert code == 0
    rows = {r["version"]: r for r in json.loads(out)["versions"]}
    assert len(rows["1"]["classes"]) == 46 and "burrito" in rows["1"]["classes"]
    assert sorted(rows[env["v2"]]["classes"]) == sorted(env["said"]["trained"]["classes"])
    assert len(rows[env["v2"]]["classes"]) == 10
    code, out, _ = _cli(capsys, "versions", "--history", "--json")
    assert any(e["vocabulary"] for e in json.loads(out)["history"])


@pytest.mark.food10
def test_compare_states_coverage_and_common_ground(env, food10, capsys):
    code, out, err = _cli(capsys, "compare", "1", env["v2"], "--data", str(food10 / "test"), "--json")
    assert code == 0, err
    result = json.loads(out)
    by = {v["version"]: v for v in result["versions"]}
    assert result["common_labels"] == ["breakfast_burrito"]  # counts as burrito for version 1
    assert by["1"]["coverage"] == pytest.approx(0.1) and by[env["v2"]]["coverage"] == 1.0
    assert by["1"]["common"]["n"] == by[env["v2"]]["common"]["n"] == 50
    assert by["1"]["common"]["accuracy"] > 0.3  # burrito photos named burrito: right, not 0.000
    assert by[env["v2"]]["overall"]["accuracy"] > 0.7
    assert set(by["1"]["overall"]) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}


@pytest.mark.food10
def test_drift_cli_blames_the_model_change_not_the_users(env, capsys):
    # replayed times: version 1's traffic spans the last 3 days, version 2's the last day
    code, out, err = _cli(capsys, "drift", "--reference", "first:60", "--current", "last:100", "--json", "--no-log")
    report = json.loads(out)
    assert report["reference"]["model_versions"] == "1" and env["v2"] in report["current"]["model_versions"]
    assert report["model_change"] is True
    assert report["reference"]["n"] == 60 and report["current"]["n"] == 100  # served answers only (no shadows)
    assert report["reference"]["asked"] == 60
    assert report["recommendation"].startswith("The model changed")
    assert "different mix of foods" not in report["recommendation"]
    # like with like: since the current champion, replayed traffic included
    code, out, err = _cli(capsys, "drift", "--reference", "champion:@60", "--current", "last:60", "--json", "--no-log")
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["reference"]["model_versions"] == env["v2"]  # version 2's served answers, replayed included
    assert report["reference"]["n"] == 60 and report["reference"]["asked"] == 60


# ------------------------------------------------------------------------------ the pages

def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=180)
    at.session_state["user"] = "analyst"
    return at


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def _texts(at) -> str:
    parts = [x.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "subheader")
             for x in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.food10
def test_monitoring_counts_served_answers_and_shows_the_challenger_on_purpose(env):
    at = _page("monitoring.py")
    at.session_state["mon_hide_replayed"] = False
    at.session_state["mon_period"] = "All time"
    at.run()
    assert not at.exception, at.exception
    uploaded, uploaded_shadows = _live_uploads(env)
    served = N_BEFORE + N_AFTER + uploaded
    assert _metrics(at)["Predictions"] == f"{served:,}"
    text = _texts(at)
    assert "served answers only" in text and f"{N_AFTER + uploaded_shadows} challenger answers not counted" in text
    assert "Champion and challenger disagreement" in text and f"of {N_AFTER + uploaded_shadows:,} photos" in text
    acc = next(d.value for d in at.dataframe if "answers" in d.value.columns and "judged" in d.value.columns)
    rows = {(r.model_version, r.answers): r for r in acc.itertuples()}
    assert {("1", "served"), (env["v2"], "served"), ("1", "shadow")} == set(rows)
    assert rows[(env["v2"], "served")].accuracy > 0.6 > rows[("1", "served")].accuracy
    assert all(r.low <= r.accuracy <= r.high and r.judged > 0 for r in rows.values())
    # version 1 alone, last 24 hours: its served answers are older; its shadow answers are asked for on purpose
    at = _page("monitoring.py")
    at.session_state["mon_hide_replayed"] = False
    at.session_state["mon_period"] = "All time"
    at.session_state["mon_versions"] = ["1"]
    at.session_state["mon_include_shadow"] = True
    at.run()
    assert not at.exception, at.exception
    assert _metrics(at)["Predictions"] == f"{N_BEFORE + N_AFTER + sum(_live_uploads(env, '1')):,}"  # 1's served + shadow
    assert f"{N_AFTER + uploaded_shadows:,} challenger (shadow) answers included" in _texts(at)


def _live_uploads(env, version: str | None = None) -> tuple[int, int]:
    """Photos uploaded on Analyze by other tests sharing this session's store (the browser
    scenario): ``(served answers, shadow answers)``; the replayed traffic above is not all."""
    from nutrilearn.tracking.reader import PredictionReader

    reader = PredictionReader(env["settings"])
    try:
        live = reader.predictions(source="app", model_version=version, columns=("request_id", "model_version"))
    finally:
        reader.close()
    shadows = int(live["request_id"].str.endswith(".challenger").sum())
    return len(live) - shadows, shadows


@pytest.mark.food10
def test_models_page_shows_vocabularies_difference_and_the_guard(env):
    at = _page("models.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    foods = dict(zip(table["version"].astype(str), table["foods"]))
    assert foods == {env["v2"]: 10, "1": 46}
    text = _texts(at)
    assert f"version {env['v2']} knows 10 foods, version 1 knows 46; 0 in common" in text
    assert f"**Only version {env['v2']} can name** (10)" in text and "**Only version 1 can name** (46)" in text
    assert f"version {env['v2']} 100.0%, version 1 10.0%" in text  # coverage of food10/test, one percent format
    assert "On the 1 labels both can produce** (50 photos)" in text
    history = at.dataframe[-1].value
    assert history["vocabulary"].str.startswith("accepted").any()


@pytest.mark.food10
def test_drift_page_since_the_current_champion_with_replayed_traffic(env):
    at = _page("drift.py")
    at.session_state["drift_ref_kind"] = "Since the current champion"
    at.session_state["drift_since_n"] = 60
    at.session_state["drift_cur_n"] = 60
    at.run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "Not enough predictions" not in text
    banner = " ".join(x.value for kind in ("success", "info", "warning", "error") for x in getattr(at, kind))
    assert f"first after the champion took over 60: 60 found, version {env['v2']}" in banner
    assert "The model changed" not in banner
    # the default windows straddle the promotion: the banner leads with the model change
    at = _page("drift.py")
    at.session_state["drift_ref_n"] = 60
    at.session_state["drift_cur_n"] = 100
    at.run()
    assert not at.exception, at.exception
    banner = " ".join(x.value for kind in ("success", "info", "warning", "error") for x in getattr(at, kind))
    assert "The model changed: the reference was served by version 1" in banner
    assert "different mix of foods" not in banner


@pytest.mark.food10
def test_analyze_shows_the_challengers_answer_beside(env, food10):
    photo = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[0]
    at = _page("analyze.py").run()
    at.file_uploader(key="uploads").set_value([(photo.name, photo.read_bytes(), "image/jpeg")])
    at.run(timeout=180)
    assert not at.exception, at.exception
    text = _texts(at)
    assert f"model version {env['v2']}: this model knows 10 foods" in text
    assert "Version 1 runs beside it as challenger (46 foods)" in text
    assert any("Challenger (model version 1)" in i.value for i in at.info)
    record = next(iter(at.session_state["analyze_results"].values()))
    assert record.model_version == env["v2"]
