"""Drift: has recent traffic moved away from a reference, in foods, confidence, photos or
embeddings; what the model's accuracy is likely to be without labels; how well calibrated.

Thin page: reads the windows the analyst picks, calls ``nutrilearn.monitoring`` (drift,
performance, drift_views, drift_runs) and draws with altair.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, time, timedelta, timezone

import altair as alt
import pandas as pd
import streamlit as st

from nutrilearn.answers import VEGA_PERCENT, percent, percent_columns
from nutrilearn.monitoring import drift_views as views
from nutrilearn.monitoring import drift_data, performance, photos, windows
from nutrilearn.monitoring.clusters import ClusterDrift, map_sample
from nutrilearn.monitoring.stats import food_names
from nutrilearn.monitoring.drift import IMAGE_PROPERTIES, DriftMonitor
from nutrilearn_app import state
from nutrilearn_app.charts import PICK, move_rules, photo_map, picked

state.require("view_monitoring")  # first: also when the page is opened without app.py (see state.require)

EFFECT_NAMES = {"js_distance": "Jensen-Shannon distance", "psi": "PSI", "ks_d": "KS D", "max_ks_d": "largest KS D",
                "domain_auc": "witness AUC"}


def views_effect_name(name) -> str:
    return EFFECT_NAMES.get(str(name), str(name).replace("_", " "))


BANNER = {"none": st.success, "low": st.info, "medium": st.warning, "high": st.error}
WINDOW_COLOURS = alt.Scale(domain=list(views.WINDOWS), range=["#4c78a8", "#f58518"])
P_COLUMNS = {"statistic": st.column_config.NumberColumn(format="%.3g"),
             "p_value": st.column_config.NumberColumn("p", format="%.2e"),
             "p_adjusted": st.column_config.NumberColumn("p (Holm)", format="%.2e")}


@st.cache_resource(show_spinner=False, max_entries=4)
def _fitted(key: tuple, _reference: pd.DataFrame, alpha: float) -> DriftMonitor:
    """The detectors fitted on the reference (``key``: the window and the data version),
    once for the report and the over-time tests. Shared by the sessions: a fitted monitor
    only reads its reference afterwards."""
    return DriftMonitor(alpha).fit(_reference)


@st.cache_data(show_spinner="Testing for drift…", max_entries=16)
def _report(key: tuple, fit_key: tuple, _reference: pd.DataFrame, _current: pd.DataFrame, alpha: float):
    """The report of the two windows, once per (windows, data version, alpha)."""
    return _fitted(fit_key, _reference, alpha).report(_current, key[0], key[1])


@st.cache_data(show_spinner="Clustering photos…", max_entries=16)
def _clusters(key: tuple, _reference: pd.DataFrame, _current: pd.DataFrame):
    """Both windows' photos in clusters, once per (windows, data version)."""
    return ClusterDrift().fit(_reference).compare(_current)


@st.cache_data(show_spinner="Testing over time…", max_entries=16)
def _chunk_tests(key: tuple, fit_key: tuple, _reference: pd.DataFrame, _later: pd.DataFrame, every, _alpha: float):
    """The chunks after the reference tested one by one (before alpha: ``.at(alpha)`` after
    the cache, so an alpha change tests nothing again; the monitor fitted at the page's
    alpha tests them as any other would). Apart from the report: they do not depend on the
    current window."""
    return _fitted(fit_key, _reference, _alpha).chunk_tests(_later, every)


@st.cache_data(show_spinner="Reading feedback…", max_entries=16)
def _accuracy(key: tuple, _reference: pd.DataFrame, _later: pd.DataFrame, _feedback: pd.DataFrame, every) -> dict:
    """Accuracy over time (estimated, and realized where feedback exists) and the labelled
    predictions the calibration reads: the Accuracy tab's, without the drift tests."""
    truth = performance.labelled(pd.concat([_reference, _later]), _feedback)
    return {"accuracy": performance.performance_over_time(_later, every, truth), "truth": truth}


@st.cache_resource(show_spinner=False, max_entries=8)
def _window(spec: str, name: str, live_only: bool, champion, version: tuple) -> windows.Window:
    """A window as ``drift_data.select`` reads it, once per data version (``version``):
    a change of the other window or of alpha reads neither again. Shared by the sessions
    and never modified (``windows.without`` makes a new one)."""
    return drift_data.select(state.prediction_reader().history, spec, name, live_only=live_only, champion=champion)


@st.cache_resource(show_spinner=False, max_entries=2)
def _later_pool_read(key: tuple) -> Future:
    """A sample of every usable prediction, read in a thread of its own once per data
    version (``key`` holds the runs count): the page draws at once, and the sample is
    ready by the time the Over time or Accuracy tab asks for it (the read takes ~1.4 s at
    1M). Each reference and the replayed toggle take their later sample from it
    (``drift_data.later_from``). Shared by the sessions and never modified."""
    reading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-later-pool")
    future = reading.submit(drift_data.later_pool, state.prediction_reader().history)
    reading.shutdown(wait=False)
    return future


def _later_pool(key: tuple) -> pd.DataFrame:
    """The sample ``_later_pool_read`` reads, waited for; a failed read is not kept."""
    future = _later_pool_read(key)
    try:
        with st.spinner("Reading predictions…"):
            return future.result()
    except Exception:
        _later_pool_read.clear()
        raise


@st.cache_data(show_spinner=False, max_entries=8, ttl=900)
def _thumbnails(request_ids: tuple[str, ...], times: tuple) -> dict[str, bytes]:
    """The photos of the maps and cluster examples (a thumbnail never changes: safe to keep)."""
    return photos.thumbnails(state.prediction_reader(), request_ids, times=times)


def _photos_of(request_ids, *windows: pd.DataFrame) -> dict[str, bytes]:
    """Thumbnails by request id, looked up on the days the ``windows`` hold them; none when
    they cannot be read (photos are a help here, never a reason to fail the page; a failure
    is not cached, so the next run tries again)."""
    ids = tuple(dict.fromkeys(request_ids))
    try:
        return _thumbnails(ids, tuple(photos.times_of(ids, *windows)))
    except Exception:
        return {}


def _with_photos(points: pd.DataFrame, thumbs: dict[str, bytes]) -> pd.DataFrame:
    """A map's points (``request_id``, ``label``) with the ``photo`` (data URL) and ``food`` it shows."""
    return points.assign(photo=[photos.data_url(thumbs.get(r)) for r in points["request_id"]],
                         food=food_names(points["label"]))


def _record_beside(source, request_id: str | None, detail: str, *windows: pd.DataFrame) -> None:
    """The record of the point clicked in a map (its photo, food, confidence, ``detail``),
    read from the day the ``windows`` say it was logged."""
    rec = None
    if request_id:
        start, end = photos.time_span(t for t in photos.times_of([request_id], *windows) if t is not None)
        rec = photos.record(source, request_id, start=start, end=end)
    if rec is None:
        st.caption("Click a point in the map to open its record here.")
        return
    if rec.thumbnail:
        st.image(rec.thumbnail, width=180)
    food = food_names(pd.Series([rec.fields.get("label")])).iloc[0]
    st.markdown(f"**{food}** · {percent(rec.fields.get('confidence'))} · {detail}")
    st.dataframe(photos.record_table(rec), hide_index=True, width="stretch", height=300)


cfg = state.settings()
st.title("🧭 Drift")
st.caption("Each signal is a statistical test of the current window against the reference; the report "
           "corrects across signals (Holm), so a 'drift' verdict is wrong at most alpha of the time when "
           "nothing changed. See docs/drift.md.")

try:
    with st.spinner("Reading predictions…"):
        reader = state.prediction_reader()
        reader.refresh()  # windows are then read through the engine, each its rows only
        feedback = reader.feedback(refresh=False)
except Exception:  # an unreachable tracking server must not take the page down
    st.error(f"Cannot read predictions from `{cfg.tracking_uri}`: the tracking store did not answer. "
             "Check that it is running and reachable, then reload.")
    st.stop()

with st.sidebar:
    st.subheader("Drift windows")
    live_only = st.toggle("Leave out replayed traffic", value=False, key="drift_live_only")
    ref_kind = st.selectbox("Reference", ["First N predictions", "Since the current champion",
                                          "After a version became champion", "Date range"], key="drift_ref_kind")
    champion = None
    if ref_kind == "First N predictions":
        ref_spec = f"first:{st.number_input('N (reference)', 20, 1_000_000, 500, 100, key='drift_ref_n')}"
    elif ref_kind == "Since the current champion":
        ref_spec = f"champion:@{st.number_input('N (reference)', 20, 1_000_000, 500, 100, key='drift_since_n')}"
        try:
            champion = windows.champion_start(cfg)
        except Exception:
            st.warning("Cannot read the registry's alias history right now: pick a time instead.")
        if champion is None:
            st.info("No champion move recorded yet: promote a version on the Models page, or pick a time.")
        else:
            st.caption(f"Version {champion[1]} became champion at {champion[0]:%Y-%m-%d %H:%M} UTC. The window "
                       f"holds its served answers from then on; replayed ones count whatever their simulated time.")
    elif ref_kind == "Date range":
        oldest = drift_data.oldest_time(reader.history, live_only)
        first_day = oldest.date() if oldest else datetime.now(timezone.utc).date()
        days = st.date_input("From - to (UTC, end exclusive)", (first_day, first_day + timedelta(days=7)),
                             key="drift_ref_range")
        start, end = (days[0], days[-1]) if len(days) else (first_day, first_day + timedelta(days=7))
        ref_spec = f"range:{start.isoformat()}..{end.isoformat()}"
    else:
        day = st.date_input("Champion since (UTC day)", datetime.now(timezone.utc).date(), key="drift_champ_day")
        at = st.time_input("at (UTC)", time(0, 0), key="drift_champ_time")
        n = st.number_input("N (reference)", 20, 1_000_000, 500, 100, key="drift_champ_n")
        versions = drift_data.model_versions(reader.history, live_only)
        version = st.selectbox("Version", ["any", *versions], key="drift_champ_version")
        ref_spec = f"champion:{datetime.combine(day, at).isoformat()}@{n}" + (
            f",version={version}" if version != "any" else "")
    cur_kind = st.selectbox("Current", ["Last N predictions", "Last D days"], key="drift_cur_kind")
    if cur_kind == "Last N predictions":
        cur_spec = f"last:{st.number_input('N (current)', 20, 1_000_000, 500, 100, key='drift_cur_n')}"
    else:
        cur_spec = f"days:{st.number_input('D (days)', 1, 365, 7, key='drift_cur_days')}"
    alpha = st.select_slider("Alpha (whole report)", [0.01, 0.05, 0.1], value=0.05, key="drift_alpha")
    chunking = st.selectbox("Over time, test each", ["day", "500 predictions", "100 predictions"],
                            key="drift_chunking")
    every = "1D" if chunking == "day" else int(chunking.split()[0])

version = drift_data.data_version(reader.history)
try:
    reference = _window(ref_spec, "reference", live_only, champion, version)
except windows.WindowSpecError as exc:
    st.info(str(exc))
    st.stop()
current = windows.without(_window(cur_spec, "current", live_only, None, version), reference)
if min(reference.n, current.n) < 20:
    st.info(f"Not enough predictions to test: reference {reference.summary()}, current {current.summary()} "
            "(served answers; each window needs at least 20). Log more predictions (Analyze page, "
            "`nutrilearn predict`, or `nutrilearn replay`) or widen the windows.")
    st.stop()

pool_key = (cfg.tracking_uri, str(cfg.home), version[0])  # the runs mirrored
_later_pool_read(pool_key)  # started now, waited for only by the tabs that use it
moves_all = state.champion_moves()  # here, not first in a tab: the first read imports MLflow (~1.5 s)
key = (reference.describe(), current.describe())
# The windows themselves (spec, size, time span) and the data version: never the size of
# the whole history, so a new prediction recomputes only what it changes.
fit_key = (key[0], ref_spec, live_only, version)
report = _report((key[0], key[1], ref_spec, cur_spec, live_only, version), fit_key, reference.frame,
                 current.frame, alpha)


def _later() -> tuple[pd.DataFrame, tuple]:
    """The predictions after the reference (the Over time and Accuracy tabs only) and the
    cache key they give."""
    later = drift_data.later_from(_later_pool(pool_key), reference, live_only=live_only)
    latest = str(later["timestamp"].max()) if len(later) else ""
    return later, (key[0], ref_spec, live_only, len(later), latest)


# ------------------------------------------------------------------------- verdict
def _window_text(w, info: dict) -> str:
    versions = info.get("model_versions")
    return f"{w.summary()}" + (f", version {versions}" if versions else "")


BANNER[report.severity](f"**{report.verdict.upper()}** (severity {report.severity}) — "
                        f"reference `{ref_spec}` ({_window_text(reference, key[0])}) vs current `{cur_spec}` "
                        f"({_window_text(current, key[1])}). {report.recommendation}")
st.caption("Windows hold served answers only (a challenger's shadow answers never enter them); "
           "\"asked\" is what the window asked for, \"found\" what the log holds.")
table = report.to_frame()[["signal", "verdict", "severity", "p_value", "threshold", "distance_name", "distance",
                           "min_distance", "method", "note"]]
table = table.assign(distance_name=table["distance_name"].map(lambda x: views_effect_name(x)))
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "distance_name": st.column_config.TextColumn("effect size"),
    "p_value": st.column_config.NumberColumn("p (Holm)", format="%.2e"),
    "threshold": st.column_config.NumberColumn("alpha", format="%.2f"),
    "distance": st.column_config.NumberColumn("effect", format="%.3f"),
    "min_distance": st.column_config.NumberColumn("effect floor", format="%.2f")})
if st.button("Record this check in MLflow", help="Logs a run in experiment nutrilearn-monitoring"):
    from nutrilearn.monitoring.drift_runs import log_drift_check

    try:
        run_id = log_drift_check(report, cfg, tags={"source": "drift page", "user": state.current_user()})
        st.success(f"Logged as run `{run_id}`.")
    except Exception:
        st.error("Could not record the check: the tracking store did not answer. Try again later.")

# Only the open tab runs (Streamlit's lazy tabs): the over-time tests, the clusters and the
# maps' photos are computed when the analyst looks at them, not on every change.
tabs = st.tabs(["Foods", "Confidence", "Image properties", "Over time", "Embeddings", "Photo clusters", "Accuracy",
               "History"], key="drift_tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open:
        shares = views.food_shares(reference.frame, current.frame)
        st.altair_chart(alt.Chart(shares).mark_bar().encode(
            x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of predictions"),
            y=alt.Y("food:N", sort=alt.EncodingSortField("share", op="max", order="descending"), title=None),
            yOffset=alt.YOffset("window:N"), color=alt.Color("window:N", scale=WINDOW_COLOURS),
            tooltip=[alt.Tooltip("food"), alt.Tooltip("window"), alt.Tooltip("share:Q", format=VEGA_PERCENT),
                     alt.Tooltip("change:Q", format="+" + VEGA_PERCENT)],
        ), width="stretch")
        food = report.result("food")
        food_tests = report.checks_frame().query("signal == 'food'")
        st.caption(f"Chi-squared with {food.details.get('dof', '-')} degrees of freedom; pooled: "
                   f"{', '.join(food.details.get('pooled_classes', [])) or 'none'}. "
                   f"PSI {food.details.get('psi', 0):.3f}, "
                   f"Jensen-Shannon distance {food.details.get('js_distance', 0):.3f}.")
        st.dataframe(food_tests[["feature", "test", "statistic", "p_value", "p_adjusted", "effect", "drifted"]],
                     hide_index=True, width="stretch", column_config=P_COLUMNS)


def _for_chart(frame: pd.DataFrame) -> pd.DataFrame:
    """Chunk (and move) times as naive UTC (vega-lite has no time zones) and p-values
    floored at 1e-16 so that the log axis can show them."""
    naive = {c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in ("start", "end", "when") if c in frame}
    out = frame.assign(**naive)
    return out.assign(p_value=out["p_value"].clip(lower=1e-16)) if "p_value" in out else out


def _overlay_chart(frame: pd.DataFrame, column: str) -> alt.Chart:
    return alt.Chart(frame).transform_density(column, groupby=["window"], as_=[column, "density"]).mark_area(
        opacity=0.45).encode(x=alt.X(f"{column}:Q"), y=alt.Y("density:Q", stack=None),  # overlaid, not stacked
                             color=alt.Color("window:N", scale=WINDOW_COLOURS))


with tabs[1]:
    if tabs[1].open:
        conf = report.result("confidence")
        st.altair_chart(_overlay_chart(views.overlay(reference.frame, current.frame, "confidence"), "confidence"),
                        width="stretch")
        st.caption(f"KS D {conf.statistic:.3f}, Wasserstein {conf.details.get('wasserstein', float('nan')):.3f}; "
                   f"mean confidence {percent(conf.details.get('reference_mean'))} -> "
                   f"{percent(conf.details.get('current_mean'))}.")

with tabs[2]:
    if tabs[2].open:
        prop = st.selectbox("Property", IMAGE_PROPERTIES, key="drift_property")
        st.altair_chart(_overlay_chart(views.overlay(reference.frame, current.frame, prop), prop), width="stretch")
        st.dataframe(report.checks_frame().query("signal == 'image'")[
            ["feature", "statistic", "p_value", "p_adjusted", "drifted"]], hide_index=True, width="stretch",
            column_config=P_COLUMNS)
        st.caption("One KS test per property, Holm-adjusted across the six (p_adjusted), then across signals.")

with tabs[3]:
    if tabs[3].open:
        later, later_key = _later()
        series = _chunk_tests(later_key, fit_key, reference.frame, later, every, alpha).at(alpha)
        if not series.empty:
            series = series.dropna(subset=["p_value"])
        if series.empty:
            st.info("No predictions after the reference window yet.")
        else:
            moves = views.over_time_moves(moves_all, series)
            series = series.assign(effect=series["distance_name"].map(views_effect_name))
            # One dataset (the chart is faceted by signal): the chunks, and the moves beside them.
            chart_data = _for_chart(pd.concat([series, moves], ignore_index=True))
            line = alt.Chart().transform_filter("isValid(datum.start)").mark_line(point=True).encode(
                x=alt.X("start:T", title="chunk start (UTC)"), y=alt.Y("distance:Q", title="effect size"),
                shape=alt.Shape("drifted:N", title="drifted"),
                tooltip=[alt.Tooltip("signal"), alt.Tooltip("effect"), alt.Tooltip("start:T"), alt.Tooltip("n"),
                         alt.Tooltip("distance:Q", format=".3f", title="effect"),
                         alt.Tooltip("min_distance:Q", format=".2f", title="floor"),
                         alt.Tooltip("p_value:Q", format=".2e", title="p (Holm)"), alt.Tooltip("drifted"),
                         alt.Tooltip("severity")])
            floor = alt.Chart().mark_rule(strokeDash=[6, 3], color="red").encode(y=alt.Y("mean(min_distance):Q"))
            st.altair_chart(alt.layer(line, floor, move_rules(), data=chart_data).properties(height=110, width=600)
                            .facet(row=alt.Row("signal:N", title=None)).resolve_scale(y="independent"))
            st.caption("Each chunk is tested against the reference. Drawn: each signal's effect size (food: "
                       "Jensen-Shannon distance; confidence: KS D; image: largest KS D; embedding: witness AUC) with "
                       "its materiality floor as the red line; a chunk drifted when its effect passes the floor *and* "
                       "its Holm-adjusted p-value is at most alpha (hover for it). With many chunks, expect about "
                       "alpha of them to alarm by chance."
                       + (" Dashed lines: champion moves (promotions, rollbacks), from the registry's alias history."
                          if len(moves) else ""))

with tabs[4]:
    if tabs[4].open:
        # 150 a window: each point's thumbnail goes with the chart, about as many as the cluster map's
        projection = views.embedding_projection(reference.frame, current.frame, cap=150)
        if projection.empty:
            st.info("No embeddings in these windows.")
        else:
            ratio = projection.attrs.get("explained", [0, 0])
            points = _with_photos(projection, _photos_of(projection["request_id"], reference.frame, current.frame))
            map_col, record_col = st.columns([3, 1])
            event = map_col.altair_chart(photo_map(
                points, alt.X("pc1:Q", title=f"PC1 ({percent(ratio[0])})"),
                alt.Y("pc2:Q", title=f"PC2 ({percent(ratio[1])})"), alt.Color("window:N", scale=WINDOW_COLOURS),
                ["window", "food", "request_id"]),
                width="stretch", on_select="rerun", selection_mode=[PICK], key="drift_embedding_map")
            map_col.caption(f"{len(points):,} photos; hover over a point to see its photo, click it to open its "
                            "record.")
            with record_col:
                chosen = picked(event)
                windows_of = dict(zip(points["request_id"], points["window"]))
                _record_beside(reader, chosen, f"{windows_of.get(chosen, '–')} window", reference.frame,
                               current.frame)
            emb = report.result("embedding")
            st.caption(f"PCA fitted on the reference. MMD p = {emb.p_value:.3g} "
                       f"({emb.details.get('permutations', '-')} permutations, at most "
                       f"{emb.details.get('sample_cap', '-')} embeddings a window); "
                       f"kernel-witness AUC {emb.distance:.2f}.")

with tabs[5]:
    if tabs[5].open:
        clustered = _clusters((key[0], key[1], ref_spec, cur_spec, live_only, version), reference.frame,
                              current.frame)
        if not clustered.clusters:
            st.info("Too few predictions with embeddings in these windows to cluster.")
        else:
            shown = clustered.moved()[:6] or clustered.clusters[:1]
            dots = map_sample(clustered)
            thumbs = _photos_of([*dots["request_id"], *(r for c in shown for r in c.examples)], reference.frame,
                                current.frame)
            st.caption(f"Both windows' embeddings in {clustered.k} clusters (k-means, seeded); a cluster moved when "
                       "its share of the current window differs from its share of the reference by 5 points or "
                       "more. Largest change first: a cluster that grew is a kind of photo that came in.")
            dots = _with_photos(dots, thumbs).assign(cluster=dots["cluster"].astype(str))
            map_col, record_col = st.columns([3, 1])
            event = map_col.altair_chart(photo_map(
                dots, alt.X("x:Q", title=f"PC1 ({percent(clustered.explained[0])})"),
                alt.Y("y:Q", title=f"PC2 ({percent(clustered.explained[1])})"),
                alt.Color("cluster:N", title="cluster", scale=alt.Scale(scheme="category10")),
                ["cluster", "window", "food", "request_id"], shape=alt.Shape("window:N", title="window")),
                width="stretch", on_select="rerun", selection_mode=[PICK], key="drift_cluster_map")
            map_col.caption(f"{len(dots):,} of the clustered photos; hover over a point to see its photo, click it to "
                            "open its record. Axes: the first two principal directions of both windows' embeddings.")
            with record_col:
                chosen = picked(event)
                _record_beside(reader, chosen, f"cluster {clustered.cluster_of().get(chosen, '–')}", reference.frame,
                               current.frame)
            names = dict(zip(clustered.points["request_id"], food_names(clustered.points["label"])))
            for c in shown:
                foods = ", ".join(food_names(pd.Series(c.top_foods)).tolist()) if c.top_foods else "–"
                with st.container(border=True, key=f"drift-cluster-{c.id}"):
                    st.markdown(f"**Cluster {c.id}**: {percent(c.reference_share)} of the reference → "
                                f"{percent(c.current_share)} of the current window ({percent(c.change, signed=True)}); "
                                f"mostly {foods}")
                    found = [r for r in c.examples if r in thumbs]
                    if found:
                        st.image([thumbs[r] for r in found], width=96, caption=[names.get(r, "") for r in found])
                    else:
                        st.caption("No thumbnails kept for these photos (kept since thumbnails exist, unless "
                                   "NUTRILEARN_KEEP_THUMBNAILS=0). Request ids: " + ", ".join(c.examples))

with tabs[6]:
    if tabs[6].open:
        later, later_key = _later()
        timed = _accuracy((*later_key, len(feedback)), reference.frame, later, feedback, every)
        acc = timed["accuracy"]
        if not acc.empty:
            acc = _for_chart(acc)
        if acc.empty:
            st.info("No predictions after the reference window yet.")
        else:
            band = alt.Chart(acc).mark_area(opacity=0.2).encode(
                x=alt.X("start:T"), y=alt.Y("expected_lower:Q", title="accuracy"), y2=alt.Y2("expected_upper:Q"))
            line = alt.Chart(acc).mark_line(point=True).encode(
                x=alt.X("start:T", title="chunk start"), y=alt.Y("expected_accuracy:Q"),
                tooltip=[alt.Tooltip("start:T"), alt.Tooltip("n"),
                         alt.Tooltip("expected_accuracy:Q", format=VEGA_PERCENT)])
            layers = band + line
            realized = acc.dropna(subset=["realized_accuracy"])
            if len(realized):
                layers += alt.Chart(realized).mark_errorbar().encode(
                    x=alt.X("start:T"), y=alt.Y("realized_lower:Q", title="accuracy"), y2=alt.Y2("realized_upper:Q"))
                layers += alt.Chart(realized).mark_point(color="black", filled=True).encode(
                    x=alt.X("start:T"), y=alt.Y("realized_accuracy:Q"),
                    tooltip=[alt.Tooltip("start:T"), alt.Tooltip("labelled"),
                             alt.Tooltip("realized_accuracy:Q", format=VEGA_PERCENT)])
            st.altair_chart(layers, width="stretch")
            st.caption("Line: accuracy estimated from confidence (CBPE; 95% band), valid only as far as the model "
                       "is calibrated. Black: realized accuracy from feedback, with Wilson 95% intervals.")
        truth = timed["truth"]
        if truth.empty:
            st.info("No feedback yet: calibration needs confirmed or corrected labels.")
        else:
            in_ref = truth["request_id"].isin(reference.frame["request_id"])
            truth = truth.assign(window=in_ref.map({True: "reference", False: "later"}))
            st.dataframe(percent_columns(performance.calibration_by(truth, ["model_version", "window"]),
                                         ("mean_confidence", "accuracy")), hide_index=True, width="stretch",
                         column_config={"ece": st.column_config.NumberColumn("ECE", format="%.3f"),
                                        "mean_confidence": st.column_config.NumberColumn("mean confidence")})
            ece, diagram = performance.reliability(truth)
            st.altair_chart(alt.Chart(diagram).mark_line(point=True).encode(
                x=alt.X("mean_confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence"),
                y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
                tooltip=[alt.Tooltip("count"),
                         alt.Tooltip("mean_confidence:Q", format=VEGA_PERCENT, title="mean confidence"),
                         alt.Tooltip("accuracy:Q", format=VEGA_PERCENT)])
                + alt.Chart(pd.DataFrame({"x": [0, 1]})).mark_line(strokeDash=[4, 4], color="grey").encode(
                    x=alt.X("x:Q"), y=alt.Y("x:Q", title="accuracy")),
                width="stretch")
            st.caption(f"Reliability diagram over all labelled predictions (ECE {ece:.3f}); the diagonal is perfect "
                       "calibration.")

with tabs[7]:
    if tabs[7].open:
        from nutrilearn.monitoring.drift_runs import drift_history

        try:
            history = drift_history(cfg)
        except Exception:
            st.warning("Cannot read past checks right now: the tracking store did not answer.")
        else:
            if history.empty:
                st.info("No drift checks logged yet (`nutrilearn drift`, or the button above).")
            else:
                p_config = {f"{sig}.p_value": st.column_config.NumberColumn(f"{sig} p (Holm)", format="%.2e")
                            for sig in ("food", "confidence", "image", "embedding")}
                st.dataframe(history, hide_index=True, width="stretch", column_config=p_config | {
                    "run_id": st.column_config.TextColumn("MLflow run"),
                    "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm"),
                    "drifted_signals": st.column_config.TextColumn("drifted signals")})
