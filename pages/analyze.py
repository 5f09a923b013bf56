"""Analyze: upload food photos, see what the model says, log feedback."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from nutrilearn.nutrition import MAX_PORTION, facts_for, known_labels
from nutrilearn.pipeline import Photo
from nutrilearn.tracking.records import FeedbackRecord, utc_now
from nutrilearn.vision.vocabulary import NOT_FOOD, display_name
from nutrilearn_app import state

st.title("📷 Analyze")
st.caption("Upload one or many photos (JPEG, PNG or WebP). Each is checked, classified and logged.")

uploads = st.file_uploader("Food photos", accept_multiple_files=True, key="uploads")
results: dict[str, object] = st.session_state.setdefault("analyze_results", {})

# Predict only what is new: reruns (every click) must neither recompute nor log twice.
new = [u for u in uploads or [] if u.file_id not in results]
if new:
    bar = st.progress(0.0, text=f"Analyzing {len(new)} photo(s)…")
    records = state.analyzer().analyze(
        [Photo(u.name, u.getvalue()) for u in new],
        user=state.current_user(),
        source="app",
        progress=lambda done, total: bar.progress(done / total, text=f"Analyzed {done} of {total}"),
    )
    bar.empty()
    for upload, record in zip(new, records):
        results[upload.file_id] = record

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
            tooltip=["food", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=150)
    )


def _nutrition_card(label: str, key: str) -> None:
    facts = facts_for(label)
    if facts is None:
        st.caption("No nutrition facts for this food.")
        return
    portion = st.number_input(
        f"Portion (× {facts.serving_g:g} g serving)", min_value=0.25, max_value=float(MAX_PORTION),
        value=1.0, step=0.25, key=f"portion-{key}",
    )
    scaled = facts.scaled(portion)
    cols = st.columns(5)
    cols[0].metric("Energy", f"{scaled.kcal:.0f} kcal")
    cols[1].metric("Protein", f"{scaled.protein_g:.1f} g")
    cols[2].metric("Carbs", f"{scaled.carbohydrate_g:.1f} g")
    cols[3].metric("Fat", f"{scaled.fat_g:.1f} g")
    cols[4].metric("Fibre", f"{scaled.fibre_g:.1f} g")
    st.caption(f"{scaled.serving_g:.0f} g. Source: {facts.source}")


def _feedback(record, key: str) -> None:
    logger = state.prediction_logger()
    given = st.session_state.setdefault("feedback_given", {})
    if record.request_id in given:
        st.success(f"Feedback saved: {display_name(given[record.request_id])}")
        return
    options = sorted(known_labels(), key=display_name)
    default = options.index(record.label) if record.label in options else 0
    truth = st.selectbox("What is it really?", options, index=default, format_func=display_name, key=f"truth-{key}")
    if st.button("Save label", key=f"fb-{key}", disabled=logger is None,
                 help=None if logger is not None else "Tracking is not configured"):
        logger.submit_feedback(
            FeedbackRecord(record.request_id, utc_now(), state.current_user(), truth, record.label, "app")
        )
        given[record.request_id] = truth
        st.rerun()


for upload, record in shown:
    key = upload.file_id
    with st.container(border=True):
        left, right = st.columns([1, 2])
        if not record.ok:
            left.markdown(f"**{upload.name}**")
            right.error(f"Could not use this file: {record.error_message}")
            continue
        left.image(upload.getvalue(), caption=upload.name, use_container_width=True)
        with right:
            if record.label == NOT_FOOD:
                st.subheader("Not a recognised food")
                st.caption(f"{record.confidence:.0%} sure this is not one of the foods the model knows. "
                           "Closest foods below.")
            else:
                st.subheader(f"{display_name(record.label)} — {record.confidence:.0%}")
            st.altair_chart(_top5_chart(record), use_container_width=True)
            st.caption(f"{record.total_ms:.0f} ms · model v{record.model_version} ({record.model_alias})")
            if record.label != NOT_FOOD:
                _nutrition_card(record.label, key)
            _feedback(record, key)
