"""Photos: the photos behind the numbers (least confident, per food, mistakes, disagreements).

Which photos to show comes from ``nutrilearn.monitoring.photos`` (DuckDB over the window,
never the thumbnail column); then the chosen photos' thumbnails only, by request id. This
page lays out the grid and the click-through to a record.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from nutrilearn import monitoring as mon
from nutrilearn.monitoring import photos
from nutrilearn.vision.vocabulary import display_name
from nutrilearn_app import state

state.require("view_monitoring")  # first: also when the page is opened without app.py

COLUMNS = 6  # tiles a row
TABS = {"Least confident": "least confident", "By food": "by food", "Mistakes": "mistakes",
        "Champion vs challenger": "disagreements"}
EXPLAIN = {
    "least confident": "The answers the model was least sure of, least first.",
    "by food": "The most answered foods, each with its least confident photos.",
    "mistakes": "Answers that feedback corrected (said vs true), the most confident mistakes first.",
    "disagreements": "Photos where the challenger's shadow answer differs from the champion's, newest first.",
}

cfg = state.settings()
reader = state.prediction_reader()

st.title("🖼️ Photos")

with st.sidebar:
    st.subheader("Photo filters")
    period = st.selectbox("Time range", list(mon.TIME_RANGES), index=list(mon.TIME_RANGES).index("Last 7 days"),
                          key="photos_period")
    hide_replayed = st.toggle("Hide replayed traffic", value=True, key="photos_hide_replayed",
                              help="Records made by `nutrilearn replay` (demos, tests) are left out")
    n = st.slider("Photos a gallery", 6, 60, 24, 6, key="photos_n")

if st.button("🔄 Refresh", help="Read new prediction batches from MLflow now") or "photos_loaded" not in st.session_state:
    reader.refresh()
    st.session_state["photos_loaded"] = True

filters = mon.Filters.last(mon.TIME_RANGES[period], hide_replayed=hide_replayed)
since = filters.start
try:
    foods = photos.foods(reader, filters)
except Exception as exc:  # an unreadable store must not take the page down
    st.error(f"Cannot read predictions: {type(exc).__name__}: {exc}")
    st.stop()
if not foods:
    st.info("No predictions in this time range. Analyze some photos, or widen the range"
            + (" (replayed traffic is hidden: untick **Hide replayed traffic** to see it)." if hide_replayed else "."))
    st.stop()
if not cfg.keep_thumbnails:
    st.info("Thumbnails are off here (`NUTRILEARN_KEEP_THUMBNAILS=0`): new predictions keep no photo; "
            "older ones show theirs.")
food = st.selectbox("Food", [None, *foods], key="photos_food",
                    format_func=lambda f: "all foods" if f is None else display_name(f))


def _select(request_id: str) -> None:
    st.session_state["photos_selected"] = request_id


@st.dialog("Record", width="large", on_dismiss=lambda: _select(""))
def _record_dialog(rid: str) -> None:
    """The click-through: the photo's record, its challenger's answer and feedback."""
    rec = photos.record(reader, rid, start=since)
    st.markdown(f"**Record** `{rid}`")
    if rec is None:
        st.warning("That record is not in this time range any more.")
        return
    left, right = st.columns([1, 2])
    if rec.thumbnail:
        left.image(rec.thumbnail, width="stretch")
    else:
        left.caption("no photo kept")
    right.table(photos.record_table(rec).set_index("field"))


def _grid(frame: pd.DataFrame, key: str) -> None:
    """Thumbnails in rows of ``COLUMNS``, each captioned, with a button to its record."""
    start, end = photos.time_span(frame["timestamp"])  # only the days these photos were taken
    thumbs = photos.thumbnails(reader, frame["request_id"], start=start, end=end)
    for start in range(0, len(frame), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, row in zip(cols, frame.iloc[start:start + COLUMNS].itertuples(index=False)):
            with col:
                thumb = thumbs.get(row.request_id)
                if thumb:
                    st.image(thumb, caption=row.caption, width="stretch")
                else:
                    st.caption(f"no photo kept · {row.caption}")
                st.button("Record", key=f"{key}-{row.request_id}", on_click=_select, args=(row.request_id,),
                          width="stretch")


for tab, (title, which) in zip(st.tabs(list(TABS)), TABS.items()):
    with tab:
        st.caption(EXPLAIN[which])
        frame = photos.gallery(reader, which, filters, n=n, food=food)
        if frame.empty:
            st.info({"mistakes": "No corrected answers in this range: feedback that names another food shows here.",
                     "disagreements": "No disagreements in this range (or no challenger is answering in shadow).",
                     }.get(which, "No answers to show."))
            continue
        if which == "by food":
            for label, group in frame.groupby("label", sort=False):
                st.markdown(f"**{display_name(label)}** · {int(group['food_count'].iloc[0]):,} answers")
                _grid(group, f"photos-{which}")
        else:
            _grid(frame, f"photos-{which}")
if st.session_state.get("photos_selected"):  # open until dismissed, across reruns
    _record_dialog(st.session_state["photos_selected"])
