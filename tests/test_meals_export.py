"""CSV export: the bytes behind the page's download button and ``nutrilearn meals export``."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nutrilearn.cli import meals as meals_cli
from nutrilearn.meals import MealEntry, MealStore, manual_facts, meals_to_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MealStore:
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = MealStore.from_settings()
    s.ensure_user("ana", "Asia/Tokyo")
    s.log_meal(MealEntry(user="ana", label="ramen", meal_type="dinner", portion=1.5,
                         predicted_label="pho", request_id="r-1",
                         eaten_at=dt.datetime(2026, 2, 1, 10, 0, tzinfo=dt.UTC)))
    s.log_meal(MealEntry(user="ana", label="=HYPERLINK(\"http://x\")", meal_type="snack",
                         nutrition=manual_facts("=HYPERLINK(\"http://x\")", kcal=100, protein_g=5,
                                                carbohydrate_g=15, fat_g=2),
                         eaten_at=dt.datetime(2026, 2, 3, 1, 0, tzinfo=dt.UTC)))
    yield s
    s.close()


def test_csv_round_trip(store: MealStore) -> None:
    data = meals_to_csv(store.meals("ana"))
    df = pd.read_csv(io.BytesIO(data))
    assert len(df) == 2
    first = df.iloc[0]
    assert first["eaten_at"] == "2026-02-01T19:00:00+09:00"  # local time with its offset
    assert first["eaten_at_utc"] == "2026-02-01T10:00:00+00:00"
    assert first["date"] == "2026-02-01" and first["label"] == "ramen"
    assert first["predicted_label"] == "pho" and bool(first["corrected"])
    assert first["portion"] == 1.5 and first["request_id"] == "r-1"


def test_csv_defuses_spreadsheet_formulas(store: MealStore) -> None:
    df = pd.read_csv(io.BytesIO(meals_to_csv(store.meals("ana"))))
    assert df.iloc[1]["label"].startswith("'=HYPERLINK")
    assert not any(str(v).startswith("=") for v in df.to_numpy().ravel())


def test_cli_export_writes_a_file(store: MealStore, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out" / "ana.csv"
    assert meals_cli.main(["export", "--user", "ana", "-o", str(out), "--start", "2026-02-02"]) == 0
    df = pd.read_csv(out)
    assert len(df) == 1 and df.iloc[0]["meal_type"] == "snack"
    assert "wrote 1 meal(s) of ana" in capsys.readouterr().out
    assert meals_cli.main(["users"]) == 0
    assert capsys.readouterr().out.split() == ["ana"]


def test_cli_export_errors(store: MealStore, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert meals_cli.main(["export", "--user", "nobody", "-o", str(tmp_path / "x.csv")]) == 1
    assert "no user named 'nobody'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    assert meals_cli.main(["export", "--user", "ana", "-o", "-", "--start", "2026-03-01",
                           "--end", "2026-02-01"]) == 2
    with pytest.raises(SystemExit):
        meals_cli.main(["export", "--user", "ana", "-o", "-", "--start", "yesterday"])


def test_cli_runs_as_a_module_to_stdout(store: MealStore) -> None:
    done = subprocess.run([sys.executable, "-m", "nutrilearn.cli.meals", "export", "--user", "ana", "-o", "-"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # env from the fixture
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(io.StringIO(done.stdout))["label"].tolist()[0] == "ramen"
