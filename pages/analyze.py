"""Analyze: upload food photos, see what the model says, log feedback."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from nutrilearn.answers import VEGA_PERCENT, error_text, percent, unsure_below
from nutrilearn.meals import MEAL_TYPES, MealEntry, StoreBusyError, UnknownFoodError
from nutrilearn.nutrition import MAX_PORTION, facts_for, known_labels
from nutrilearn.pipeline import Photo
from nutrilearn.registry.feedback_store import keep_photo
from nutrilearn.tracking.records import FeedbackRecord, utc_now
from nutrilearn.vision.vocabulary import NOT_FOOD, display_name
from nutrilearn_app import state

state.require("analyze")  # first: also when the page is opened without app.py (see state.require)

st.title("📷 Analyze")
st.caption("Upload one or many photos (JPEG, PNG or WebP). Each is checked, classified and logged.")

uploads = st.file_uploader("Food photos", accept_multiple_files=True, key="uploads")
results: dict[str, object] = st.session_state.setdefault("analyze_results", {})
shadows: dict[str, object] = st.session_state.setdefault("analyze_shadows", {})  # request id -> challenger record
UNSURE_BELOW = unsure_below()

# Predict only what is new: reruns (every click) must neither recompute nor log twice.
new = [u for u in uploads or [] if u.file_id not in results]
if new:
    bar = st.progress(0.0, text=f"Analyzing {len(new)} photo(s)…")
    serving = state.analyzer()
    records = serving.analyze(
        [Photo(u.name, u.getvalue()) for u in new],
        user=state.current_user(),
        source="app",
        progress=lambda done, total: bar.progress(done / total, text=f"Analyzed {done} of {total}"),
    )
    bar.empty()
    for upload, record in zip(new, records):
        results[upload.file_id] = record
    for shadow in getattr(serving, "last_challenger_records", None) or []:
        shadows[shadow.request_id.removesuffix(".challenger")] = shadow


def _served_models() -> str:
    """'Version 2 answers; it knows 10 foods' (+ the challenger), from what serves now."""
    try:
        served = state.analyzer().served
    except Exception:
        return ""
    champ = served.champion
    text = (f"Answers come from model version {champ.info.version or '1'}: this model knows "
            f"{len(champ.head.labels)} foods")
    if served.challenger is not None:
        text += (f". Version {served.challenger.info.version} runs beside it as challenger "
                 f"({len(served.challenger.head.labels)} foods); its answer is shown for comparison")
    return text + "."


if note := _served_models():
    st.caption(note)

shown = [(u, results[u.file_id]) for u in uploads or [] if u.file_id in results]
if not shown:
    st.info("No photos yet. Drop some above: a plate of food works best.")
    st.stop()

n_err = sum(not r.ok for _, r in shown)
st.write(f"**{len(shown)}** photo(s): {len(shown) - n_err} classified, {n_err} failed.")


def _top5_chart(record) -> alt.Chart:
    data = pd.DataFrame({"food": [display_name(l) for l in record.top5_labels], "probability": record.top5_probs})
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("food:N", sort="-x", title=None),
            tooltip=["food", alt.Tooltip("probability:Q", format=VEGA_PERCENT)],
        )
        .properties(height=alt.Step(26))  # one 26 px row a food: every label shows
    )


def _nutrition_card(label: str, key: str) -> float:
    """Nutrition for the chosen food at the chosen portion; returns the portion."""
    facts = facts_for(label)
    if facts is None:
        st.caption("No nutrition facts for this food.")
        return 1.0
    portion = st.number_input(
        f"Portion (× {facts.serving_g:g} g serving)", min_value=0.25, max_value=float(MAX_PORTION),
        value=1.0, step=0.25, key=f"portion-{key}",
    )
    scaled = facts.scaled(portion)
    cols = st.columns(5)
    cols[0].metric("Energy (kcal)", f"{scaled.kcal:.0f}")
    cols[1].metric("Protein", f"{scaled.protein_g:.1f} g")
    cols[2].metric("Carbs", f"{scaled.carbohydrate_g:.1f} g")
    cols[3].metric("Fat", f"{scaled.fat_g:.1f} g")
    cols[4].metric("Fibre", f"{scaled.fibre_g:.1f} g")
    st.caption(f"{scaled.serving_g:.0f} g. Source: {facts.source}")
    return portion


def _save_feedback(record, truth: str, photo: bytes) -> None:
    """A confirmed or corrected label: a feedback record, and (if enabled) a training photo."""
    logger = state.prediction_logger()
    if logger is not None:
        logger.submit_feedback(
            FeedbackRecord(record.request_id, utc_now(), state.current_user(), truth, record.label, "app")
        )
    keep_photo(state.settings(), record.request_id, truth, photo)  # no-op unless NUTRILEARN_KEEP_FEEDBACK_PHOTOS


def _label_and_log(record, key: str, photo: bytes) -> None:
    """Confirm or correct the label; optionally log the photo as a meal (also feedback)."""
    done = st.session_state.setdefault("analyze_done", {})
    if record.request_id in done:
        st.success(done[record.request_id])
        return
    options = sorted(known_labels(), key=display_name)
    sure = record.label != NOT_FOOD and (record.confidence or 0.0) >= UNSURE_BELOW
    preselect = options.index(record.label) if sure and record.label in options else None
    truth = st.selectbox(
        "What is it really?", options, index=preselect,
        format_func=display_name, key=f"truth-{key}",
        placeholder="Choose the food (type to search all foods)",
    )
    if truth is None:
        return
    portion = _nutrition_card(truth, key)
    cols = st.columns([2, 1, 1])
    meal_type = cols[0].selectbox("Meal", MEAL_TYPES, key=f"meal-{key}", label_visibility="collapsed")
    if cols[1].button("Log meal", key=f"log-{key}", type="primary"):
        try:
            store, me = state.meal_store(), state.meal_actor()
            store.ensure_user(state.meal_owner(), actor=me,
                              display_name=me.display_name if me and not me.is_local else None)
            store.log_meal(MealEntry(
                user=state.meal_owner(), label=truth, meal_type=meal_type, portion=portion,
                predicted_label=record.label, request_id=record.request_id,
            ), actor=me)
        except (ValueError, StoreBusyError, UnknownFoodError, PermissionError) as exc:
            st.error(f"The meal was not logged: {exc}")
            return
        _save_feedback(record, truth, photo)
        done[record.request_id] = f"Logged {display_name(truth)} ({portion:g} serving) as {meal_type}."
        st.rerun()
    if cols[2].button("Save label only", key=f"fb-{key}"):
        _save_feedback(record, truth, photo)
        done[record.request_id] = f"Label saved: {display_name(truth)}."
        st.rerun()


for upload, record in shown:
    key = upload.file_id
    with st.container(border=True):
        left, right = st.columns([1, 2])
        if not record.ok:
            left.markdown(f"**{upload.name}**")
            right.error(f"Could not use this file. {error_text(record.error_type)}")
            continue
        left.image(upload.getvalue(), caption=upload.name, width="stretch")
        with right:
            if record.label == NOT_FOOD:
                st.subheader("Not a recognised food")
                closest = ", ".join(display_name(l) for l in record.top5_labels[:5])
                st.caption("This does not look like any of the foods the model knows"
                           + (f". If it is food, the closest it knows are: {closest}." if closest else "."))
            elif (record.confidence or 0.0) < UNSURE_BELOW:
                st.subheader(f"Not sure — maybe {display_name(record.label)} ({percent(record.confidence)})")
                st.warning(f"The model is unsure ({percent(record.confidence)} for its best guess, below "
                           f"{percent(UNSURE_BELOW)}). Pick the food from the top 5 below, or search all foods.")
                st.altair_chart(_top5_chart(record), width="stretch")
            else:
                st.subheader(f"{display_name(record.label)} — {percent(record.confidence)}")
                st.altair_chart(_top5_chart(record), width="stretch")
            shadow = shadows.get(record.request_id)
            if shadow is not None and shadow.label is not None:
                said = ("not a recognised food" if shadow.label == NOT_FOOD
                        else f"{display_name(shadow.label)} — {percent(shadow.confidence)}")
                agree = "agrees" if shadow.label == record.label else "disagrees"
                st.info(f"Challenger (model version {shadow.model_version}) {agree}: **{said}**")
            st.caption(f"{record.total_ms:.0f} ms · model version {record.model_version} "
                       f"({'served' if record.model_alias in ('champion', '') else record.model_alias})")
            _label_and_log(record, key, upload.getvalue())
