"""A store for the drift drill-down and the labelling queue, built once a session: real
food10 photos replayed through the real pipeline (thumbnails and embeddings kept).

- reference period (3 to 9 days ago): photos of nine foods, every food but ribs;
- current window (the last day): as many photos of baby back ribs, the "other food",
  plus a few of the nine.

So the Drift page with ``first:N_REFERENCE`` against ``last:N_CURRENT`` finds the ribs'
cluster, and the labelling queue over the last two days has a grown cluster to point at.
No feedback is logged: the tests label items themselves.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OTHER_FOOD = "baby_back_ribs"
N_REFERENCE, N_CURRENT, N_MIXED = 150, 90, 30
ENV_CLEARED = ("MLFLOW_TRACKING_URI", "DATABASE_URL", "NUTRILEARN_SPOOL_DIR", "NUTRILEARN_UNSURE_BELOW",
               "NUTRILEARN_KEEP_THUMBNAILS")


def _folder(root: Path, food10: Path, foods: list[str]) -> Path:
    """A folder of class folders holding food10/test's photos of ``foods`` (copies)."""
    for food in foods:
        shutil.copytree(food10 / "test" / food, root / food)
    return root


@pytest.fixture(scope="session")
def label_store(tmp_path_factory, classifier, food10):
    from nutrilearn import serving
    from nutrilearn.cli.tracking import final_flush, open_logger
    from nutrilearn.config import Settings
    from nutrilearn.registry.jobs import ensure_version_one
    from nutrilearn.registry.store import Registry
    from nutrilearn.replay import replay
    from nutrilearn.tracking.records import utc_now

    home = tmp_path_factory.mktemp("label-home")
    photos = tmp_path_factory.mktemp("label-photos")
    foods = sorted(p.name for p in (food10 / "test").iterdir() if p.is_dir())
    nine = _folder(photos / "nine", food10, [f for f in foods if f != OTHER_FOOD])
    ribs = _folder(photos / "ribs", food10, [OTHER_FOOD])
    mp = pytest.MonkeyPatch()
    mp.setenv("NUTRILEARN_HOME", str(home))
    mp.setenv("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
    mp.setenv("NUTRILEARN_BATCH_MAX_AGE_S", "0.5")
    for var in ENV_CLEARED:
        mp.delenv(var, raising=False)
    mp.setattr(serving, "load_classifier", lambda *a, **k: classifier)
    try:
        settings = Settings.from_env()
        ensure_version_one(settings, Registry(settings))
        analyzer = serving.build_analyzer(settings)
        logger = open_logger(settings)
        now = utc_now()
        done = [
            replay(nine, N_REFERENCE, 6, 3, 0.0, 1, analyzer=analyzer, sink=logger, now=now - timedelta(days=3)),
            replay(ribs, N_CURRENT, 1, 3, 0.0, 2, analyzer=analyzer, sink=logger, now=now),
            replay(nine, N_MIXED, 1, 3, 0.0, 3, analyzer=analyzer, sink=logger, now=now),
        ]
        flushed, lost = final_flush(logger, 60)
        assert not lost
    finally:
        mp.undo()  # the rest of the session must not run in this store's home
    records = [r for d in done for r in d.records]
    said = Counter(r.label for r in done[1].records if r.status == "ok")  # what the model called the ribs
    yield {"home": home, "settings": settings, "now": now, "records": records, "foods": foods,
           "n_current": N_CURRENT + N_MIXED, "other_food_said": [label for label, _ in said.most_common(3)]}
