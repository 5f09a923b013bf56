"""Models: registered versions, side-by-side comparison, guarded alias moves and their history."""

from __future__ import annotations

import altair as alt
import streamlit as st

from nutrilearn.answers import percent, percent_columns
from nutrilearn.registry import admin, views
from nutrilearn.registry.routing import registry_exists
from nutrilearn.registry.store import CHALLENGER, CHAMPION, Registry, RegistryError
from nutrilearn.vision.vocabulary import display_name
from nutrilearn_app import state

state.require("view_monitoring")  # first: also when the page is opened without app.py (see state.require)

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
    st.error(f"Cannot read the model registry at `{cfg.tracking_uri}`: the tracking store did not answer. "
             "Check that it is running and reachable, then reload.")
    st.stop()
if not versions:
    st.info("No versions registered yet. Run `nutrilearn setup`.")
    st.stop()
by_version = {v.version: v for v in versions}
aliases = {a: v.version for v in versions for a in v.aliases}

# -- versions table -----------------------------------------------------------------------
live, live_note, traffic = None, None, None
try:
    from nutrilearn.registry.live import live_figures

    reader = state.prediction_reader()
    # The columns live figures and the vocabulary guard use (no embeddings, no top-5 lists).
    traffic = reader.predictions(columns=("request_id", "timestamp", "user", "source", "status", "label",
                                          "confidence", "model_version", "model_alias"))
    live = live_figures(traffic, reader.feedback())
except Exception:  # monitoring data is a bonus here, never a reason to fail
    live_note = "Live figures are unavailable: the prediction log cannot be read right now."


@st.cache_data(show_spinner=False, max_entries=64)
def _vocabulary(tracking_uri: str, version: str, run_id: str) -> tuple[str, ...]:
    """A version's vocabulary (never changes: cached by version and run)."""
    return reg.vocabulary(version)


def _vocab(version: str) -> tuple[str, ...]:
    return _vocabulary(cfg.tracking_uri, version, by_version[version].run_id)


st.subheader("Versions")
st.dataframe(percent_columns(views.versions_table(versions, live), views.PERCENT_COLUMNS), hide_index=True,
             width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in views.NUMBER_COLUMNS}
             | {"foods": st.column_config.NumberColumn("foods it knows"),
                "training data": st.column_config.TextColumn("training data"),
                "evaluated on": st.column_config.TextColumn("evaluated on")})
st.caption("Foods it knows: the size of the version's vocabulary (the labels it can answer). Coverage: the share of "
           "the evaluation photos whose true label the version can produce (label relations such as "
           "breakfast burrito → burrito applied). Precision, recall and F1 are macro averages over the evaluation "
           "photos' classes (`nutrilearn evaluate --version V --data DIR`). Live figures come from the prediction "
           "log, replayed traffic left out: served answers are what people were given, shadow answers the "
           "challenger's to the same photos; realized accuracy is the share of judged answers that feedback "
           "agreed with, with its 95% Wilson interval." + (f" {live_note}" if live_note else ""))

# -- two versions side by side -----------------------------------------------------------------
st.subheader("Compare two versions")
numbers = [v.version for v in versions]
default_a = aliases.get(CHAMPION, numbers[-1])
default_b = aliases.get(CHALLENGER) or next((n for n in numbers if n != default_a), default_a)
col_a, col_b = st.columns(2)
va = col_a.selectbox("Version A", numbers, index=numbers.index(default_a), key="cmp_a")
vb = col_b.selectbox("Version B", numbers, index=numbers.index(default_b), key="cmp_b")
(ea, fail_a), (eb, fail_b) = (_evaluation_of(v) for v in (va, vb))

try:
    diff = views.vocabulary_difference(_vocab(va), _vocab(vb))
except Exception:
    diff = None
    st.warning("Cannot read these versions' vocabularies right now.")
if diff is not None:
    if diff["same"]:
        st.info(f"Both versions know the same {diff['a']} foods.")
    else:
        def _names(labels: list[str], limit: int = 40) -> str:
            shown = ", ".join(display_name(l) for l in labels[:limit])
            return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")

        st.warning(f"The label sets differ: version {va} knows {diff['a']} foods, version {vb} knows {diff['b']}; "
                   f"{len(diff['common'])} in common.")
        la, lb = st.columns(2)
        la.markdown(f"**Only version {va} can name** ({len(diff['only_a'])}): {_names(diff['only_a']) or 'none'}")
        lb.markdown(f"**Only version {vb} can name** ({len(diff['only_b'])}): {_names(diff['only_b']) or 'none'}")


def _confusion_chart(ev: dict, title: str) -> alt.Chart:
    columns = ev["labels"] + ["other"]
    frame = views.confusion_frame(ev)
    frame["predicted"] = frame["predicted"].map(lambda l: "other" if l == "other" else display_name(l))
    frame["true"] = frame["true"].map(display_name)
    x_sort = [display_name(l) if l != "other" else "other" for l in columns]
    y_sort = [display_name(l) for l in ev["labels"]]
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=x_sort, title="predicted", axis=alt.Axis(labelOverlap=False, labelAngle=-45,
                                                                              labelLimit=160)),
        y=alt.Y("true:N", sort=y_sort, title="true", axis=alt.Axis(labelOverlap=False, labelLimit=160)))
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="photos",
                        legend=alt.Legend(orient="bottom", gradientLength=200)),
        tooltip=["true", "predicted", "count"])
    text = base.mark_text(fontSize=12).encode(
        text=alt.condition("datum.count > 0", "count:Q", alt.value("")),
        color=alt.condition("datum.count > 30", alt.value("white"), alt.value("black")))
    return (cells + text).properties(title=title, width=alt.Step(34), height=alt.Step(30))


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
    ground = views.common_ground(ea, eb)
    cov = lambda x: "not recorded (evaluate again)" if x is None else percent(x)  # noqa: E731
    st.markdown(f"**Coverage** (share of the evaluation photos whose true label the version can produce): "
                f"version {va} {cov(ground['coverage_a'])}, version {vb} {cov(ground['coverage_b'])}.")
    if ground["common"] and ground["accuracy_a"] is not None:
        st.markdown(f"**On the {len(ground['common'])} labels both can produce** ({ground['photos']} photos): "
                    f"accuracy version {va} {percent(ground['accuracy_a'])}, version {vb} {percent(ground['accuracy_b'])}. "
                    "`nutrilearn compare A B --data DIR` gives every metric on this common ground.")
    elif ea.get("covered_labels") is not None and eb.get("covered_labels") is not None:
        st.info("No label of the evaluation photos can be produced by both versions: the overall figures "
                "below compare different vocabularies, not skill.")
    st.caption(f"Overall figures: version B ({vb}) against version A ({va}); the small figure under each is B minus A.")
    deltas = views.metric_deltas(ea, eb)
    for start in range(0, len(deltas), 4):
        for col, d in zip(st.columns(4), deltas[start : start + 4]):
            value, delta = ((percent(d["b"]), percent(d["delta"], signed=True)) if d["percent"] else
                            (f"{d['b']:.3g}" if d["b"] >= 10 else f"{d['b']:.3f}", f"{d['delta']:+.3f}"))
            col.metric(f"{d['name']} (B)", value, delta, delta_color="inverse" if d["lower_is_better"] else "normal")
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
        st.dataframe(per_class.assign(label=per_class["label"].map(display_name)).rename(columns={"label": "food"}),
                     hide_index=True, width="stretch")
    st.altair_chart(_confusion_chart(ea, f"Version {va}: confusion matrix"), width="content")
    st.altair_chart(_confusion_chart(eb, f"Version {vb}: confusion matrix"), width="content")

# -- guarded actions -----------------------------------------------------------------------
st.subheader("Promote, challenge, roll back")
me = state.identity()  # with a login its role decides and no token is asked for; in local mode, the token
logged_in = me is not None and not me.is_local
token = ""
if cfg.admin_token and not logged_in:
    token = st.text_input("Admin token", type="password", key="admin_token",
                          help="The value of NUTRILEARN_ADMIN_TOKEN on the machine running the app.")
allowed, reason = admin.admin_status(cfg, token, me)
if logged_in and not allowed:
    st.info(f"{reason[0].upper()}{reason[1:]}. Ask an admin to move an alias; the history is below.")
else:
    (st.success if allowed else st.warning)(reason if allowed else f"Buttons are off: {reason}.")
who = state.current_user()
events = reg.history()
previous = reg.previous_champion(events)
champion = aliases.get(CHAMPION)


def _act(fn, *args, **kwargs) -> None:
    try:
        event = fn(cfg, *args, registry=reg, actor=me, **kwargs)  # the guard checks the actor again
    except (admin.NotAuthorised, RegistryError) as exc:
        st.session_state["models_flash"] = ("error", str(exc))
        return
    from nutrilearn.serving import current_models

    current_models(cfg, force=True)  # this process serves the move at once; others within the refresh interval
    st.session_state["models_flash"] = ("success", f"{event.alias}: {event.from_version or '-'} → "
                                                   f"{event.to_version or '-'} ({event.action} by {event.who})"
                                        + (f"; vocabulary change {event.vocabulary}" if event.vocabulary else ""))


def _guard_note(candidate: str | None) -> None:
    """Say before the click what a champion move to ``candidate`` would stop naming."""
    if candidate is None or champion is None or candidate == champion:
        return
    try:
        loss = admin.vocabulary_loss(cfg, reg, candidate, traffic if traffic is not None else _empty_traffic())
    except Exception:
        return
    if loss is None:
        return
    if loss.blocks:
        st.warning(loss.message() + ". Tick the box to move the champion anyway.")
    else:
        st.caption(f"Version {candidate} lacks {len(loss.not_in_candidate)} of version {champion}'s labels; "
                   f"none of them was named in the last {loss.days:g} days of traffic.")


def _empty_traffic():
    import pandas as pd

    return pd.DataFrame(columns=["timestamp", "status", "model_version", "request_id", "label"])


flash = st.session_state.pop("models_flash", None)
if flash:
    (st.success if flash[0] == "success" else st.error)(flash[1])

if allowed or not logged_in:  # a logged-in non-admin gets no controls at all
    c1, c2, c3 = st.columns(3)
    with c1.form("promote"):
        st.markdown(f"**Promote to champion** (now: {champion or 'none'})")
        candidates = [n for n in numbers if n != champion] or numbers
        v = st.selectbox("Version", candidates, key="promote_version")
        _guard_note(v)
        why = st.text_input("Why", key="promote_why", placeholder="e.g. beats v1 on food10/test by 4 points")
        allow_p = st.checkbox("Allow vocabulary change", key="promote_allow_vocab",
                              help="Move the champion even if the new one cannot name foods the current one named in "
                                   "recent traffic (recorded in the alias history)")
        if st.form_submit_button("Promote", disabled=not allowed, help=None if allowed else reason):
            _act(admin.promote, v, token, who, why, allow_vocabulary_change=allow_p, traffic=traffic)
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
        _guard_note(previous)
        why = st.text_input("Why", key="rollback_why", placeholder="e.g. realized accuracy dropped")
        allow_r = st.checkbox("Allow vocabulary change", key="rollback_allow_vocab",
                              help="Roll back even if the earlier version cannot name foods the current one named in "
                                   "recent traffic (recorded in the alias history)")
        if st.form_submit_button("Roll back", disabled=not allowed or previous is None,
                                 help=None if allowed else reason):
            _act(admin.rollback, token, who, why, allow_vocabulary_change=allow_r, traffic=traffic)
            st.rerun()

# -- alias history -------------------------------------------------------------------------------
st.subheader("Alias history")
if not events:
    st.info("No alias moves recorded yet.")
else:
    st.dataframe(views.history_table(events), hide_index=True, width="stretch")
