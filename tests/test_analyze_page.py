"""The Analyze page, driven through Streamlit's AppTest with real photos."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

PAGE = str(ROOT / "pages" / "analyze.py")


def _upload(at: AppTest, files: list[tuple[str, bytes, str]]) -> AppTest:
    at.file_uploader(key="uploads").set_value(files)
    return at.run(timeout=120)


@pytest.fixture
def page(home, classifier):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["user"] = "alice"
    return at.run()


def test_empty_page_invites_an_upload(page):
    assert not page.exception
    assert any("No photos yet" in i.value for i in page.info)


def test_real_burrito_photo_is_named_with_nutrition(page, food10):
    photo = next((food10 / "test" / "breakfast_burrito").glob("*.jpg"))
    at = _upload(page, [(photo.name, photo.read_bytes(), "image/jpeg")])
    assert not at.exception
    headers = [h.value for h in at.subheader]
    record = next(iter(at.session_state["analyze_results"].values()))
    assert record.label == "burrito"
    key = next(iter(at.session_state["analyze_results"]))
    if record.confidence >= 0.5:
        assert headers[0] == f"Burrito — {record.confidence:.1%}", headers  # the one percent format
        assert at.selectbox(key=f"truth-{key}").value == "burrito"
        assert [m.label for m in at.metric][:5] == ["Energy (kcal)", "Protein", "Carbs", "Fat", "Fibre"]
    else:  # unsure: said so, nothing preselected (one click must not log the wrong food)
        assert headers == [f"Not sure — maybe Burrito ({record.confidence:.1%})"], headers
        assert any("The model is unsure" in w.value for w in at.warning)
        assert at.selectbox(key=f"truth-{key}").value is None
    assert any("this model knows 46 foods" in c.value for c in at.caption)
    chart = at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")
    assert chart, "top-5 chart missing"


def test_text_file_gets_a_clear_error_and_the_batch_goes_on(page, food10):
    photo = next((food10 / "test" / "apple_pie").glob("*.jpg"))
    at = _upload(page, [("notes.txt", b"not a photo at all", "text/plain"),
                        (photo.name, photo.read_bytes(), "image/jpeg")])
    assert not at.exception
    assert any("not a photo we can read" in e.value for e in at.error)
    assert not any("PIL" in e.value or "Error" in e.value for e in at.error)  # no library names
    assert "1 classified, 1 failed" in " ".join(m.value for m in at.markdown)


def test_correct_the_label_and_log_a_meal(page, food10, home, monkeypatch):
    from nutrilearn.config import Settings
    from nutrilearn.meals import MealStore

    monkeypatch.setenv("NUTRILEARN_KEEP_FEEDBACK_PHOTOS", "1")
    photo = next((food10 / "test" / "breakfast_burrito").glob("*.jpg"))
    at = _upload(page, [(photo.name, photo.read_bytes(), "image/jpeg")])
    key = next(k for k in at.session_state["analyze_results"])
    at.selectbox(key=f"truth-{key}").set_value("breakfast_burrito")
    at = at.run(timeout=120)  # an unsure answer preselects nothing: the card appears once a food is chosen
    at.number_input(key=f"portion-{key}").set_value(1.5)
    at.selectbox(key=f"meal-{key}").set_value("lunch")
    at.button(key=f"log-{key}").click()
    at = at.run(timeout=120)
    assert not at.exception
    assert any("Logged Breakfast burrito (1.5 serving) as lunch" in s.value for s in at.success)

    meals = MealStore(Settings.from_env().database_url).meals("alice")
    assert len(meals) == 1
    row = meals.iloc[0]
    assert (row["label"], row["predicted_label"], row["meal_type"], row["portion"]) == (
        "breakfast_burrito", "burrito", "lunch", 1.5)
    # The corrected photo is kept as training data under its true label, by request id.
    kept = list((home / "data" / "feedback-photos" / "breakfast_burrito").glob("*.jpg"))
    assert [p.stem for p in kept] == [row["request_id"]]
    assert kept[0].read_bytes() == photo.read_bytes()
