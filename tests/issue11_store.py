"""Issue 11's store, built once per test session and shared by the AppTest scenario and the
browser test: version 1 serves replayed traffic, version 2 is trained on food10/train,
its promotion is refused (exit 2) and then allowed (--allow-vocabulary-change), version 1
becomes the challenger, and more traffic is replayed (version 2 served, version 1 in shadow).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOKEN = "issue11-admin"
N_BEFORE, N_AFTER = 120, 160
ENV_CLEARED = ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR", "NUTRILEARN_UNSURE_BELOW")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from nutrilearn.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def issue11_store(tmp_path_factory, classifier, food10):
    from nutrilearn import serving
    from nutrilearn.config import Settings
    from nutrilearn.registry.jobs import ensure_version_one, train_version
    from nutrilearn.registry.store import Registry

    home = tmp_path_factory.mktemp("issue11-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("NUTRILEARN_HOME", str(home))
    mp.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    mp.setenv("NUTRILEARN_ADMIN_TOKEN", TOKEN)
    mp.setenv("NUTRILEARN_BATCH_MAX_AGE_S", "0.5")
    for var in ENV_CLEARED:
        mp.delenv(var, raising=False)
    mp.setattr(serving, "load_classifier", lambda *a, **k: classifier)
    settings = Settings.from_env()
    reg = Registry(settings)
    said = {}
    try:
        ensure_version_one(settings, reg)
        # 1. version 1 serves (replayed) traffic over the last 3 days
        code, out, err = run_cli(["replay", "--photos", str(food10 / "test"), "--n", str(N_BEFORE), "--days", "3",
                                  "--users", "4", "--feedback-share", "0.3", "--seed", "1", "--json"])
        assert code == 0, err
        # 2. version 2: a head trained on food10/train, evaluated on food10/test (not promoted yet)
        trained = train_version(settings, [food10 / "train"], classifier, eval_data=[food10 / "test"],
                                who="pytest", registry=reg)
        said["trained"] = trained
        v2 = trained["version"]
        said["evaluated"] = run_cli(["evaluate", "--version", "1", "--data", str(food10 / "test"), "--json"])
        # 3. promote: refused (exit 2), then allowed
        said["refused"] = run_cli(["promote", v2, "--why", "beats v1 on food10/test"])
        said["promoted"] = run_cli(["promote", v2, "--why", "beats v1 on food10/test", "--allow-vocabulary-change",
                                    "--json"])
        said["challenger"] = run_cli(["set-challenger", "1", "--why", "shadow: compare on live photos"])
        serving.current_models(settings, force=True)
        # 4. more traffic: version 2 serves, version 1 answers in shadow
        code, out, err = run_cli(["replay", "--photos", str(food10 / "test"), "--n", str(N_AFTER), "--days", "1",
                                  "--users", "4", "--feedback-share", "0.3", "--seed", "2", "--json"])
        assert code == 0, err
    finally:
        mp.undo()  # before the yield: the rest of the session must not run in this store's home
    yield {"settings": settings, "reg": reg, "v2": v2, "said": said, "home": home}
