"""Label: the predictions most worth a person's label, one click each.

Thin page: ``nutrilearn.monitoring.label_queue`` chooses the photos (DuckDB over the
window) and writes each label as a feedback record of the logged-in user; this page draws
the queue with thumbnails and the reason each photo was chosen.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from nutrilearn.answers import percent
from nutrilearn.monitoring import label_queue as lq
from nutrilearn.monitoring import photos
from nutrilearn.tracking.records import utc_now
from nutrilearn.vision.vocabulary import display_name
from nutrilearn_app import state

state.require("label")  # first: the queue shows every user's photos, and labels are written as you

st.title("🔖 Label")
st.caption("The predictions most worth a label: the least sure, the ones the challenger answered differently, "
           "and photos of a kind that newly came in (clusters that grew against the period before). Nothing "
           "labelled already is asked again. Each label is feedback, as on Analyze: realized accuracy, "
           "calibration and training (`nutrilearn train --base` with kept photos) use it.")

with st.sidebar:
    st.subheader("Labelling queue")
    days = st.number_input("Window: the last D days", 1, 365, 7, key="label_days")
    reference_days = st.number_input("Compare photo clusters with the days before", 0, 365, 28, key="label_ref_days",
                                     help="0: no cluster reasons")
    n = st.number_input("Queue length", 5, 100, 10, 5, key="label_n")
    if st.button("Refresh the queue", help="Read new predictions and cluster the window again"):
        st.session_state.pop("label_now", None)

# The window stays put while a person labels (one clustering, not one per click); Refresh moves it.
now = st.session_state.setdefault("label_now", utc_now())
done: dict[str, str] = st.session_state.setdefault("label_done", {})  # request id -> what was said
start = now - timedelta(days=int(days))


@st.cache_data(show_spinner="Clustering the window's photos…", max_entries=8, ttl=3600)
def _clusters(_reader, key: tuple):
    start, end, reference_days = key
    return lq.grown_clusters(_reader, start, end, start - timedelta(days=reference_days), start)


reader = state.prediction_reader()
try:
    with st.spinner("Reading predictions…"):
        reader.refresh()
        clusters = _clusters(reader, (start, now, int(reference_days))) if reference_days else None
        queue = lq.build_queue(reader, int(n), start=start, end=now, reference_days=None, exclude=done,
                               clusters=clusters)
except Exception:  # an unreachable tracking server must not take the page down
    st.error("Cannot read predictions right now: the tracking store did not answer. Reload in a moment.")
    st.stop()

c = st.columns(4)
c[0].metric("Labelled this session", f"{len(done):,}")
c[1].metric("Labelled in the window", f"{queue.labelled:,} of {queue.answers:,}")
c[2].metric("Realized accuracy (window)", percent(queue.realized_accuracy),
            help="Share of the window's labelled answers whose label was confirmed")
c[3].metric("Mean confidence: queue / window", f"{percent(queue.mean_confidence)} / "
            f"{percent(queue.window_mean_confidence)}")
st.progress(queue.labelled / queue.answers if queue.answers else 0.0,
            text=f"{queue.labelled:,} of {queue.answers:,} answers in the window labelled")
for note in queue.notes:
    st.caption(note)
if not queue.items:
    st.success("Nothing left to label in this window." if queue.answers else
               "No predictions in this window yet: widen it in the sidebar.")
    st.stop()

try:
    thumbs = photos.thumbnails(reader, [i.request_id for i in queue.items], start=start)
except Exception:
    thumbs = {}


def _label(item: lq.QueueItem, truth: str) -> None:
    """One click: the label as feedback, written as the acting identity."""
    try:
        lq.record_label(state.prediction_logger(), state.identity(), item, truth, settings=state.settings(),
                        photo=thumbs.get(item.request_id))
    except (PermissionError, ValueError) as exc:
        st.error(f"Label not saved: {exc}")
        return
    done[item.request_id] = truth
    st.toast(f"Labelled {display_name(truth)}")
    st.rerun()


vocabulary = lq.vocabulary()
for item in queue.items:
    rid = item.request_id
    with st.container(border=True, key=f"label-item-{rid}"):
        left, right = st.columns([1, 5])
        if rid in thumbs:
            left.image(thumbs[rid], width=128)
        else:
            left.caption("no thumbnail kept")
        right.markdown(f"**{display_name(item.label)}** · {percent(item.confidence)} · version {item.model_version} · "
                       f"{item.timestamp:%Y-%m-%d %H:%M} UTC · `{rid[:12]}`")
        right.caption("Why: " + item.reason)
        buttons = right.columns(5)
        if buttons[0].button(f"✓ {display_name(item.label)}", key=f"yes-{rid}", type="primary",
                             help="Confirm: the photo shows what the model said"):
            _label(item, item.label)
        others = [x for x in item.top5_labels if x != item.label][:4]
        for slot, other in zip(buttons[1:], others):
            if slot.button(display_name(other), key=f"pick-{rid}-{other}", help="The photo shows this instead"):
                _label(item, other)
        choice = right.selectbox("Something else", vocabulary, index=None, format_func=display_name,
                                 key=f"search-{rid}", placeholder="Something else: type to search all foods",
                                 label_visibility="collapsed")
        if choice is not None:
            _label(item, choice)
