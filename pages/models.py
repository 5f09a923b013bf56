"""Models: registered versions, side-by-side comparison, guarded alias moves and their history."""

from __future__ import annotations

import altair as alt
import streamlit as st

from nutrilearn.registry import admin, views
from nutrilearn.registry.routing import registry_exists
from nutrilearn.registry.store import CHALLENGER, CHAMPION, Registry, RegistryError
from nutrilearn_app import state

st.title("🏷️ Models")
st.caption("Every version of `nutrilearn-food-classifier` in the MLflow Model Registry. "
           "The app serves `@champion`; a `@challenger` runs beside it in shadow on live traffic.")

cfg = state.settings()


@st.cache_resource(show_spinner=False)
def _registry(tracking_uri: str, models_dir: str) -> Registry:
    return Registry(cfg)


@st.cache_data(show_spinner=False, max_entries=64)
def _evaluation(tracking_uri: str, run_id: str) -> dict | None:
    """A run's evaluation.json (never changes once written, so it is cached by run id).
    A failed read raises: st.cache_data keeps only results, so it is tried again next run."""
    if not run_id:
        return None
    return _registry(cfg.tracking_uri, str(cfg.models_dir)).read_json_artifact(run_id, "evaluation.json")


def _evaluation_of(version: str) -> tuple[dict | None, str | None]:
    """(evaluation or None when the version has none, why reading it failed or None)."""
    try:
        return _evaluation(cfg.tracking_uri, by_version[version].tags.get("eval.run_id", "")), None
    except Exception as exc:  # a store hiccup or a missing artifact: show it, retry on the next run
        return None, f"{type(exc).__name__}: {exc}"


if not registry_exists(cfg):
    st.info("No versions registered yet. Run `nutrilearn setup` to register version 1 (the ImageNet food model), "
            "then `nutrilearn train --data DIR` to add trained versions.")
    st.stop()

reg = _registry(cfg.tracking_uri, str(cfg.models_dir))
try:
    versions = reg.versions()
except Exception as exc:  # the store is down: say so, do not crash the app
    st.error(f"Cannot read the model registry at `{cfg.tracking_uri}`: {type(exc).__name__}: {exc}")
    st.stop()
if not versions:
    st.info("No versions registered yet. Run `nutrilearn setup`.")
    st.stop()
by_version = {v.version: v for v in versions}
aliases = {a: v.version for v in versions for a in v.aliases}

# -- versions table -----------------------------------------------------------------------
live, live_note = None, None
try:
    from nutrilearn.registry.live import live_figures

    reader = state.prediction_reader()
    live = live_figures(reader.predictions(), reader.feedback())
except Exception as exc:  # monitoring data is a bonus here, never a reason to fail
    live_note = f"Live figures unavailable ({type(exc).__name__}: {exc})."

st.subheader("Versions")
st.dataframe(views.versions_table(versions, live), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in views.NUMBER_COLUMNS})
st.caption("Precision, recall and F1 are macro averages over the evaluation photos' classes "
           "(`nutrilearn evaluate --version V --data DIR`). Live figures come from the prediction log; "
           "realized accuracy is the share of predictions that users' feedback agreed with."
           + (f" {live_note}" if live_note else ""))

# -- two versions side by side -----------------------------------------------------------------
st.subheader("Compare two versions")
numbers = [v.version for v in versions]
default_a = aliases.get(CHAMPION, numbers[-1])
default_b = aliases.get(CHALLENGER) or next((n for n in numbers if n != default_a), default_a)
col_a, col_b = st.columns(2)
va = col_a.selectbox("Version A", numbers, index=numbers.index(default_a), key="cmp_a")
vb = col_b.selectbox("Version B", numbers, index=numbers.index(default_b), key="cmp_b")
(ea, fail_a), (eb, fail_b) = (_evaluation_of(v) for v in (va, vb))


def _confusion_chart(ev: dict, title: str) -> alt.Chart:
    columns = ev["labels"] + ["other"]
    base = alt.Chart(views.confusion_frame(ev)).encode(
        x=alt.X("predicted:N", sort=columns, axis=alt.Axis(labelOverlap=False, labelAngle=-90)),
        y=alt.Y("true:N", sort=ev["labels"], axis=alt.Axis(labelOverlap=False)))
    cells = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                    tooltip=["true", "predicted", "count"])
    text = base.mark_text(fontSize=8).encode(text=alt.condition("datum.count > 0", "count:Q", alt.value("")))
    return (cells + text).properties(title=title, width=alt.Step(19), height=alt.Step(19))


failed = {v: why for v, why in ((va, fail_a), (vb, fail_b)) if why}
for v, why in failed.items():
    st.error(f"Could not read the evaluation of version {v} (run `{by_version[v].tags.get('eval.run_id')}`): "
             f"{why}. Check that the tracking store `{cfg.tracking_uri}` is reachable and still holds the run's "
             f"`evaluation.json`, or score the version again with `nutrilearn evaluate --version {v} --data DIR`. "
             "It is read again on the next refresh.")
if failed:
    st.button("Retry reading the evaluations", key="models_eval_retry")
if ea is None or eb is None:
    missing = [v for v, e in ((va, ea), (vb, eb)) if e is None and v not in failed]
    if missing:
        st.info(f"Version(s) {', '.join(missing)} have no evaluation yet: "
                "`nutrilearn evaluate --version V --data DIR` scores them.")
else:
    if by_version[va].tags.get("eval.manifest") != by_version[vb].tags.get("eval.manifest"):
        st.warning("These versions were evaluated on different photos: the deltas compare different exams. "
                   "Evaluate both on the same folder for a fair comparison.")
    st.caption(f"Version B ({vb}) against version A ({va}); arrows show B minus A.")
    deltas = views.metric_deltas(ea, eb)
    for start in range(0, len(deltas), 4):
        for col, d in zip(st.columns(4), deltas[start : start + 4]):
            col.metric(f"{d['name']} (B)", f"{d['b']:.3g}" if d["b"] >= 10 else f"{d['b']:.3f}", f"{d['delta']:+.3f}",
                       delta_color="inverse" if d["lower_is_better"] else "normal")
    per_class = views.per_class_deltas(ea, eb)
    st.markdown(f"**Per-class F1, version {vb} minus version {va}**")
    st.altair_chart(
        alt.Chart(per_class.dropna(subset=["F1 delta (B - A)"])).mark_bar().encode(
            x=alt.X("F1 delta (B - A):Q"), y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.condition("datum['F1 delta (B - A)'] >= 0", alt.value("#4c9a2a"), alt.value("#c0392b")),
            tooltip=["label", alt.Tooltip("F1 A:Q", format=".3f"), alt.Tooltip("F1 B:Q", format=".3f"),
                     alt.Tooltip("F1 delta (B - A):Q", format="+.3f")],
        ).properties(height=max(160, 26 * len(per_class))),
        width="stretch")
    with st.expander("Per-class table"):
        st.dataframe(per_class, hide_index=True, width="stretch")
    ca, cb = st.columns(2)
    ca.altair_chart(_confusion_chart(ea, f"Version {va}: confusion matrix"), width="content")
    cb.altair_chart(_confusion_chart(eb, f"Version {vb}: confusion matrix"), width="content")

# -- guarded actions -----------------------------------------------------------------------
st.subheader("Promote, challenge, roll back")
token = ""
if cfg.admin_token:
    token = st.text_input("Admin token", type="password", key="admin_token",
                          help="The value of NUTRILEARN_ADMIN_TOKEN on the machine running the app.")
allowed, reason = admin.admin_status(cfg, token)
(st.success if allowed else st.warning)(reason if allowed else f"Buttons are off: {reason}.")
who = state.current_user()
events = reg.history()
previous = reg.previous_champion(events)
champion = aliases.get(CHAMPION)


def _act(fn, *args) -> None:
    try:
        event = fn(cfg, *args, registry=reg)
    except (admin.NotAuthorised, RegistryError) as exc:
        st.session_state["models_flash"] = ("error", str(exc))
        return
    from nutrilearn.serving import current_models

    current_models(cfg, force=True)  # this process serves the move at once; others within the refresh interval
    st.session_state["models_flash"] = ("success", f"{event.alias}: {event.from_version or '-'} → "
                                                   f"{event.to_version or '-'} ({event.action} by {event.who})")


flash = st.session_state.pop("models_flash", None)
if flash:
    (st.success if flash[0] == "success" else st.error)(flash[1])

c1, c2, c3 = st.columns(3)
with c1.form("promote"):
    st.markdown(f"**Promote to champion** (now: {champion or 'none'})")
    candidates = [n for n in numbers if n != champion] or numbers
    v = st.selectbox("Version", candidates, key="promote_version")
    why = st.text_input("Why", key="promote_why", placeholder="e.g. beats v1 on food10/test by 4 points")
    if st.form_submit_button("Promote", disabled=not allowed, help=None if allowed else reason):
        _act(admin.promote, v, token, who, why)
        st.rerun()
with c2.form("challenger"):
    st.markdown(f"**Set challenger** (now: {aliases.get(CHALLENGER) or 'none'})")
    v = st.selectbox("Version", ["none"] + [n for n in numbers if n != champion], key="challenger_version")
    why = st.text_input("Why", key="challenger_why", placeholder="e.g. shadow test before promoting")
    if st.form_submit_button("Set challenger", disabled=not allowed, help=None if allowed else reason):
        _act(admin.set_challenger, None if v == "none" else v, token, who, why)
        st.rerun()
with c3.form("rollback"):
    st.markdown(f"**Roll back** (to: {previous or 'nothing to roll back to'})")
    why = st.text_input("Why", key="rollback_why", placeholder="e.g. realized accuracy dropped")
    if st.form_submit_button("Roll back", disabled=not allowed or previous is None,
                             help=None if allowed else reason):
        _act(admin.rollback, token, who, why)
        st.rerun()

# -- alias history -------------------------------------------------------------------------------
st.subheader("Alias history")
if not events:
    st.info("No alias moves recorded yet.")
else:
    st.dataframe(views.history_table(events), hide_index=True, width="stretch")
