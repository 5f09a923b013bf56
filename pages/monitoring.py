"""Monitoring: volumes, confidence, recent predictions, system health and trends.

Reads logged predictions through the cached ``PredictionReader``; every figure comes from
``nutrilearn.monitoring``; this page only lays out widgets and draws with altair.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from nutrilearn import monitoring as mon
from nutrilearn.answers import VEGA_PERCENT, percent, percent_columns
from nutrilearn.monitoring import aggregates
from nutrilearn.monitoring import photos
from nutrilearn.monitoring import versions as mv
from nutrilearn_app import state
from nutrilearn_app.charts import move_rules

state.require("view_monitoring")  # first: also when the page is opened without app.py (see state.require)

BAND_COLOURS = {"low": "#f8d7da", "medium": "#fff3cd", "high": "#d1e7dd"}
STATUS_BOX = {mon.HEALTHY: st.success, mon.DEGRADED: st.warning, mon.UNHEALTHY: st.error}
COUNT_AXIS = alt.Axis(format="d", tickMinStep=1)  # counts: no 0.2-prediction ticks
AUTO_REFRESH = {"off": None, "every 30 s": 30, "every minute": 60, "every 5 minutes": 300}


cfg = state.settings()
reader = state.prediction_reader()


def _data_version() -> tuple[int, int]:
    """(batch runs mirrored, records waiting in the spool): changes when new predictions arrive."""
    return reader.mirror.stats()["runs"], reader.pending_count()


def _key(value) -> str:
    """A cache key part: DataFrames (the feedback) by size and newest time, the rest by repr."""
    if isinstance(value, pd.DataFrame):
        newest = str(value["timestamp"].max()) if len(value) and "timestamp" in value else ""
        return f"frame({len(value)}, {newest})"
    return repr(value)


@st.cache_data(show_spinner=False, max_entries=256)
def _figure(name: str, key: str, _args: tuple, _kw: dict):
    return getattr(aggregates, name)(state.prediction_reader().history, *_args, **_kw)


class _Figures:
    """``monitoring.aggregates``, each figure cached per (store, data version, filters,
    arguments): a widget that changes no filter (bins, search, sort, a tab) redraws from
    the cache instead of querying again; new predictions change the data version."""

    def __init__(self) -> None:
        self._version: tuple | None = None

    @property
    def version(self) -> tuple:
        """(store, data version), read once a rerun."""
        if self._version is None:
            self._version = (str(reader.mirror.directory), *_data_version())
        return self._version

    def __getattr__(self, name: str):
        def figure(history, *args, **kw):
            key = "|".join([name, _key(self.version), *map(_key, args), _key(sorted(kw.items()))])
            return _figure(name, key, args, kw)
        return figure


agg = _Figures()


@st.cache_data(show_spinner=False, max_entries=64)
def _thumbnails(key: str, ids: tuple[str, ...], start, end) -> dict[str, bytes]:
    """The shown rows' thumbnails, per data version and rows: a widget that changes no row
    (a threshold, bins, a filter set back) does not read the day files' ids again (rows
    sorted by confidence span every day of a long window: ~0.2 s at 1M)."""
    return photos.thumbnails(state.prediction_reader(), ids, start=start, end=end)


st.title("📈 Monitoring")

# ------------------------------------------------------------------------ refresh, data
top = st.columns([1, 1, 2])
refresh_clicked = top[0].button("🔄 Refresh", help="Read new prediction batches from MLflow now")
top[1].link_button("Open MLflow UI", cfg.mlflow_ui_url, help="The batch runs behind these figures "
                   f"(experiment `{cfg.predictions_experiment}`)")
auto = top[2].selectbox("Auto-refresh", list(AUTO_REFRESH), index=0, key="mon_auto_refresh",
                        help="Checks for new predictions in the background and redraws when there are some")



def _replay_panel() -> None:
    """Replay labelled photos as demo traffic (admin only: it writes to the shared store)."""
    from nutrilearn.registry.admin import admin_status

    me = state.identity()  # with a login only admins see the panel (no token); in local mode the token decides
    logged_in = me is not None and not me.is_local
    if logged_in and not admin_status(cfg, None, me, "replay")[0]:
        return
    with st.expander("Replay demo traffic"):
        st.caption("Real predictions on photos in class folders (`DIR/<label>/*.jpg`), logged as "
                   "`source=replay` over simulated days and users; see docs/monitoring.md. "
                   f"Folders are read only under the replay root `{cfg.replay_root}` (`NUTRILEARN_REPLAY_ROOT`).")
        token = (st.text_input("Admin token", type="password", key="mon_replay_token")
                 if cfg.admin_token and not logged_in else "")
        allowed, reason = admin_status(cfg, token, me, "replay")
        with st.form("mon_replay"):
            folder = st.text_input("Photos folder (inside the replay root)", key="mon_replay_dir",
                                   placeholder="food10/test")
            c = st.columns(5)
            n = c[0].number_input("Predictions", 1, 5000, 200, key="mon_replay_n")
            days = c[1].number_input("Days", 0.1, 365.0, 7.0, key="mon_replay_days")
            n_users = c[2].number_input("Users", 1, 100, 5, key="mon_replay_users")
            share = c[3].number_input("Feedback share", 0.0, 1.0, 0.2, 0.05, key="mon_replay_share")
            seed = c[4].number_input("Seed", 0, 2**31 - 1, 0, key="mon_replay_seed")
            go = st.form_submit_button("Replay", disabled=not allowed, help=None if allowed else reason)
        if not allowed:
            st.caption(reason)
        if go and allowed:
            from nutrilearn.replay import folder_within, replay
            from nutrilearn.serving import build_analyzer

            try:
                photos_dir = folder_within(cfg.replay_root, folder)
            except ValueError as exc:  # outside the root (.., a link out, elsewhere) or empty
                st.error(str(exc))
                return
            bar = st.progress(0.0, text="Predicting…")
            try:
                result = replay(photos_dir, int(n), float(days), int(n_users), float(share), int(seed),
                                confine_to=cfg.replay_root,
                                analyzer=build_analyzer(cfg, classifier=state.classifier(), sink=None),
                                sink=state.prediction_logger(),
                                progress=lambda done, total: bar.progress(done / total, f"Predicted {done} of {total}"))
            except (ValueError, OSError) as exc:
                bar.empty()
                st.error(f"Replay failed: {exc}")
                return
            bar.empty()
            st.session_state["mon_replay_done"] = (
                f"Replayed {len(result.records):,} predictions from {result.distinct_photos:,} photos, "
                f"{len(result.feedback):,} with feedback ({result.elapsed_s:.1f} s). Untick **Hide replayed "
                "traffic** to see them.")
            st.rerun()


if done := st.session_state.pop("mon_replay_done", None):
    st.success(done)
_replay_panel()

try:
    with st.spinner("Reading predictions…"):
        if refresh_clicked or "mon_loaded" not in st.session_state:
            reader.refresh()
            st.session_state["mon_loaded"] = True
        # Figures are DuckDB aggregates over the chosen time range (monitoring.aggregates): no
        # rows are loaded but the ones a table shows, so memory follows what is shown, not the
        # history (the sidebar's choice, read before it is drawn).
        window = mon.TIME_RANGES.get(st.session_state.get("mon_period", "Last 7 days"))
        # To the minute, so reruns within a minute ask the same window (and hit the figure cache).
        now = pd.Timestamp.now(tz="UTC").floor("min").to_pydatetime()
        since = None if window is None else now - window
        feedback = reader.feedback(start=since, refresh=False)
except Exception as exc:  # an unreachable tracking server must not take the page down
    st.error(f"Cannot read predictions from `{cfg.tracking_uri}`: {type(exc).__name__}: {exc}")
    st.stop()

if AUTO_REFRESH[auto]:
    @st.fragment(run_every=timedelta(seconds=AUTO_REFRESH[auto]))
    def _watch(seen: int) -> None:
        """Reruns the page only when new batches or spooled records have arrived."""
        try:
            reader.refresh()
            now_seen = _data_version()
        except Exception as exc:  # keep showing what we have; say why it is not updating
            st.caption(f"Auto-refresh could not read new predictions: {type(exc).__name__}: {exc}")
            return
        if now_seen != seen:
            st.rerun()
        st.caption(f"Auto-refresh {auto}; last checked {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC")

    _watch(_data_version())

history = reader.history
everything = mon.Filters(start=since, hide_replayed=False, include_shadow=True)  # all of the time range
options = agg.filter_options(history, everything)

# -------------------------------------------------------------------------------- filters
with st.sidebar:
    st.subheader("Monitoring filters")
    period = st.selectbox("Time range", list(mon.TIME_RANGES), index=list(mon.TIME_RANGES).index("Last 7 days"),
                          key="mon_period")
    versions = st.multiselect("Model version", options["model_versions"], key="mon_versions",
                              placeholder="all versions")
    users = st.multiselect("User", options["users"], key="mon_users", placeholder="all users")
    hide_replayed = st.toggle("Hide replayed traffic", value=True, key="mon_hide_replayed",
                              help="Records made by `nutrilearn replay` (demos, tests) are left out")
    include_shadow = st.toggle("Include challenger (shadow) answers", value=False, key="mon_include_shadow",
                               help="A challenger's answers to photos the champion answered. Off: every figure "
                                    "counts the answers people were given. On: the challenger's answers are "
                                    "counted too (pick its version above to see them alone).")
    low = st.slider("Low-confidence threshold", 0.05, 0.95, mon.stats.LOW_CONFIDENCE, 0.05, key="mon_low")

filters = mon.Filters.last(mon.TIME_RANGES[period], now=now, model_versions=tuple(versions), users=tuple(users),
                           hide_replayed=hide_replayed, include_shadow=include_shadow)
ov = agg.overview(history, filters)
# Versions meet on purpose (accuracy by version, disagreement): shadow answers included there only.
compare = replace(filters, include_shadow=True) if options["shadow"] else filters
joined = agg.join_feedback(history, compare, feedback)
pairs = agg.shadow_pairs(history, replace(filters, model_versions=())) if options["shadow"] else pd.DataFrame()

if ov.total == 0:
    if agg.overview(history, everything).total == 0 and _data_version() == (0, 0):
        st.info("No predictions logged yet. Analyze some photos, or replay labelled ones: "
                "`nutrilearn replay --photos DIR --n 500 --days 7 --users 5`.")
    elif hide_replayed and options["replayed"]:
        st.info(f"No live predictions match these filters; {options['replayed']:,} replayed predictions "
                "are hidden. Turn off **Hide replayed traffic** in the sidebar to include them.")
    elif not include_shadow and (n_compare := agg.overview(history, compare).total):
        st.info(f"No served predictions match these filters; {n_compare:,} challenger (shadow) answers do. "
                "Turn on **Include challenger (shadow) answers** in the sidebar to see them.")
    else:
        st.info("No predictions match these filters.")
    st.stop()

# ------------------------------------------------------------------------------- overview
cols = st.columns(6)
cols[0].metric("Predictions", f"{ov.total:,}")
cols[1].metric("Mean confidence", percent(ov.mean_confidence) if ov.ok else "–")
cols[2].metric("Unique users", ov.unique_users)
cols[3].metric("Unique foods", ov.unique_foods)
cols[4].metric("Errors", f"{ov.errors:,}")
cols[5].metric("Error rate", percent(ov.error_rate))
n_shadow = agg.filter_options(history, filters)["shadow"] if include_shadow else 0
st.caption(f"{ov.first:%Y-%m-%d %H:%M} to {ov.last:%Y-%m-%d %H:%M} UTC · {ov.not_food:,} answered "
           "\"not a recognised food\"" + (f" · {ov.replayed:,} replayed" if ov.replayed else "")
           + (f" · {n_shadow:,} challenger (shadow) answers included" if n_shadow else
              " · served answers only" + (f" ({options['shadow']:,} challenger answers not counted)"
                                          if options["shadow"] else ""))
           + f" · {reader.pending_count():,} record(s) not yet flushed to MLflow")

volumes, recent_tab, confidence, health, trends = st.tabs(
    ["Volumes", "Recent predictions", "Confidence", "System health", "Trends"])

# -------------------------------------------------------------------------------- volumes
with volumes:
    n_foods = st.slider("Foods shown", 5, 30, 10, key="mon_top_n")
    left, right = st.columns(2)
    foods = agg.top_foods(history, filters, n=n_foods)
    left.altair_chart(
        alt.Chart(foods, title="Top foods").mark_bar().encode(
            x=alt.X("predictions:Q", title="Predictions", axis=COUNT_AXIS),
            y=alt.Y("food:N", sort="-x", title=None),
            tooltip=[alt.Tooltip("food"), alt.Tooltip("predictions"), alt.Tooltip("share:Q", format=VEGA_PERCENT),
                     alt.Tooltip("mean_confidence:Q", format=VEGA_PERCENT)],
        ),
        width="stretch",
    )
    daily = agg.daily_volume(history, filters).melt("day", ["predictions", "errors"], var_name="series", value_name="count")
    right.altair_chart(
        alt.Chart(daily, title="Predictions by day (UTC)").mark_line(point=True).encode(
            x=alt.X("day:T", title=None), y=alt.Y("count:Q", title="Requests", axis=COUNT_AXIS),
            color=alt.Color("series:N", title=None), tooltip=[alt.Tooltip("day:T"), alt.Tooltip("series"), alt.Tooltip("count")],
        ),
        width="stretch",
    )
    st.markdown("**By user**")
    st.dataframe(
        percent_columns(agg.by_user(history, filters), ("mean_confidence", "min_confidence", "max_confidence")), hide_index=True,
        column_config={
            "mean_confidence": st.column_config.NumberColumn("mean confidence"),
            "min_confidence": st.column_config.NumberColumn("min"),
            "max_confidence": st.column_config.NumberColumn("max"),
            "last_seen": st.column_config.DatetimeColumn("last seen (UTC)", format="YYYY-MM-DD HH:mm"),
        },
    )

# --------------------------------------------------------------------- recent predictions
with recent_tab:
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
    search = c1.text_input("Search", key="mon_search", max_chars=100,
                           placeholder="food, user, version, status, error or file name")
    sort_by = c2.selectbox("Sort by", mon.stats.RECENT_COLUMNS[:8], key="mon_sort")
    descending = c3.toggle("Descending", value=True, key="mon_desc")
    limit = c4.number_input("Rows", 10, 1000, 200, 50, key="mon_limit")
    shown = agg.recent_rows(history, filters, int(limit), search, sort_by, descending)  # these rows only
    rows = mon.recent(mon.prepare(shown), limit=int(limit), sort_by=sort_by, descending=descending, low=low)
    show_both = bool(len(pairs)) and st.toggle("Show the challenger's answer beside", value=False,
                                               key="mon_show_challenger")
    if show_both:
        rows = mv.with_challenger(rows, pairs)
    version = _key(agg.version)
    rows = photos.with_thumbnails(rows, reader, time_column="time",  # the shown rows' photos only, by request id
                                  lookup=lambda ids, start, end: _thumbnails(version, ids, start, end))
    st.caption(f"{len(rows):,} shown of {agg.recent_count(history, filters, search):,} matching")
    band_css = [f"background-color: {BAND_COLOURS[b]}" if b in BAND_COLOURS else "" for b in rows["band"]]
    styled = percent_columns(rows.style.apply(lambda _: band_css, subset=["confidence"])
                             .apply(lambda _: band_css, subset=["band"]), ("confidence", "challenger_confidence"))
    st.dataframe(
        styled, hide_index=True,
        column_config={
            "photo": st.column_config.ImageColumn("photo", help="Thumbnail kept with the prediction "
                                                  "(none when NUTRILEARN_KEEP_THUMBNAILS=0)"),
            "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "confidence": st.column_config.NumberColumn(),
            "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.0f"),
            "model_version": st.column_config.TextColumn("model version"),
            "error_type": st.column_config.TextColumn("error type"),
            "filename": st.column_config.TextColumn("file"),
            "request_id": st.column_config.TextColumn("request id"),
            "challenger_food": st.column_config.TextColumn("challenger's answer"),
            "challenger_confidence": st.column_config.NumberColumn("challenger confidence"),
            "challenger_version": st.column_config.TextColumn("challenger version"),
        },
    )

# ----------------------------------------------------------------------------- confidence
with confidence:
    summary = agg.confidence_summary(history, filters, low)
    c = st.columns(4)
    c[0].metric("Mean", percent(summary.mean) if summary.count else "–")
    c[1].metric("Median", percent(summary.median) if summary.count else "–")
    c[2].metric("Std deviation", f"{summary.std:.3f}" if summary.count > 1 else "–")
    c[3].metric(f"Below {percent(low)}", percent(summary.low_share) if summary.count else "–")
    bins = st.slider("Bins", 5, 50, 20, key="mon_bins")
    hist = agg.confidence_histogram(history, filters, bins=bins)
    several = hist["model_version"].nunique() > 1
    bars = alt.Chart(hist).mark_bar(
        opacity=0.55 if several else 0.9, binSpacing=0).encode(
        x=alt.X("bin_start:Q", bin="binned", title="Confidence", axis=alt.Axis(format="%")),
        x2=alt.X2("bin_end:Q"),
        y=alt.Y("share:Q" if several else "count:Q", stack=None,
                title="Share of the version's predictions" if several else "Predictions"),
        color=alt.Color("model_version:N", title="Version"),
        tooltip=[alt.Tooltip("model_version"), alt.Tooltip("bin_start:Q", format=VEGA_PERCENT),
                 alt.Tooltip("bin_end:Q", format=VEGA_PERCENT), "count", alt.Tooltip("share:Q", format=VEGA_PERCENT)],
    )
    rule = alt.Chart(pd.DataFrame({"threshold": [low]})).mark_rule(strokeDash=[4, 4], color="crimson").encode(
        x=alt.X("threshold:Q"))
    title = "Confidence distribution" + (" by model version" if several else "")
    st.altair_chart((bars + rule).properties(title=title), width="stretch")
    st.caption("Served answers only." if not n_shadow else
               "Served and challenger (shadow) answers, as chosen in the sidebar.")
    if several:
        st.dataframe(percent_columns(agg.confidence_by_version(history, filters, low), ("mean", "median", "low_share")),
                     hide_index=True,
                     column_config={"std": st.column_config.NumberColumn(format="%.3f"),
                                    "low_share": st.column_config.NumberColumn(f"below {percent(low)}")})

# ---------------------------------------------------------------------------- health
with health:
    report = agg.assess_health(history, filters, mon.HealthThresholds.from_env())
    STATUS_BOX[report.status](f"Status: **{report.status}**"
                              + ("" if report.problems else " — no threshold crossed"))
    for problem in report.problems:
        box = st.error if problem.severity == mon.UNHEALTHY else st.warning
        box(f"**{problem.check.replace('_', ' ')}** ({problem.severity}): {problem.detail}.\n\n"
            f"Recommendation: {problem.recommendation}")
    for note in report.notes:
        st.caption(note)
    lat = report.latency.set_index("stage")
    c = st.columns(4)
    for col, name in zip(c, ("mean", "p50", "p95", "p99")):
        value = lat.loc["total", name]
        col.metric(f"{name} latency", "–" if pd.isna(value) else f"{value:.0f} ms")
    # Side by side, never stacked: per-stage p99s do not add up to the total's p99, so the total
    # is its own bar, measured, not a sum.
    split = report.latency.melt("stage", ["mean", "p50", "p95", "p99"], var_name="statistic", value_name="ms")
    st.altair_chart(
        alt.Chart(split, title="Latency by stage (total measured end to end)").mark_bar().encode(
            x=alt.X("ms:Q", title="Milliseconds"),
            y=alt.Y("statistic:N", title=None, sort=["mean", "p50", "p95", "p99"]),
            yOffset=alt.YOffset("stage:N", sort=["decode", "preprocess", "inference", "total"]),
            color=alt.Color("stage:N", sort=["decode", "preprocess", "inference", "total"]),
            tooltip=[alt.Tooltip("stage"), alt.Tooltip("statistic"), alt.Tooltip("ms:Q", format=".1f")],
        ),
        width="stretch",
    )
    st.dataframe(report.latency, hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format="%.1f") for k in ("mean", "p50", "p95", "p99")})
    left, right = st.columns(2)
    with left:
        st.metric("Error rate", percent(report.error_rate))
        st.caption(f"{report.errors:,} errors of {report.requests:,} requests")
        if len(report.errors_by_type):
            st.altair_chart(
                alt.Chart(report.errors_by_type, title="Errors by type").mark_bar(color="#d9534f").encode(
                    x=alt.X("errors:Q", title="Errors", axis=COUNT_AXIS), y=alt.Y("error_type:N", sort="-x", title=None),
                    tooltip=[alt.Tooltip("error_type"), alt.Tooltip("errors"), alt.Tooltip("rate:Q", format=VEGA_PERCENT),
                             alt.Tooltip("share:Q", format=VEGA_PERCENT)],
                ),
                width="stretch",
            )
        else:
            st.caption("No errors in view.")
    with right:
        t = report.traffic
        a, b = st.columns(2)
        a.metric("Requests / min (mean)", f"{t.mean_rpm:.2f}")
        b.metric("Peak requests / min", t.peak_rpm)
        if t.peak_minute is not None:
            b.caption(f"at {t.peak_minute:%Y-%m-%d %H:%M} UTC")
        freq = mon.rate_frequency(ov.last - ov.first)
        st.altair_chart(
            alt.Chart(agg.request_rate(history, filters, freq), title=f"Requests per minute ({freq} buckets)").mark_area(
                line=True, opacity=0.4).encode(
                x=alt.X("time:T", title=None), y=alt.Y("per_minute:Q", title="Requests / min"),
                tooltip=[alt.Tooltip("time:T"), alt.Tooltip("requests"), alt.Tooltip("per_minute:Q", format=".2f")],
            ),
            width="stretch",
        )
    with st.expander("Health thresholds"):
        th = report.thresholds
        st.markdown(
            f"- **unhealthy** when p95 latency ≥ {th.p95_latency_ms_unhealthy:g} ms or error rate ≥ "
            f"{percent(th.error_rate_unhealthy)}\n"
            f"- **degraded** when p95 latency ≥ {th.p95_latency_ms_degraded:g} ms or error rate ≥ "
            f"{percent(th.error_rate_degraded)}\n"
            f"- the error rate is judged from {th.min_requests} requests in view\n\n"
            "Set them with " + ", ".join(f"`{v}`" for v in mon.health.THRESHOLD_ENV.values())
            + " (see docs/monitoring.md).")

    tracking = state.prediction_logger()
    if tracking is not None:
        st.subheader("Prediction logging")
        info = tracking.status()
        for problem in info.problems:
            st.error(problem)
        a, b, c, d = st.columns(4)
        a.metric("Waiting in the spool", "unreadable" if info.pending is None else f"{info.pending:,}")
        b.metric("Oldest waiting", "–" if info.oldest_pending_age_s is None
                 else f"{info.oldest_pending_age_s:,.0f} s")
        c.metric("Set aside (dead letters)", f"{info.dead_records:,}")
        d.metric("Spool log (WAL)", f"{info.wal_bytes / 1e6:.1f} MB")
        if info.dead_batches:
            st.dataframe(mon.dead_letter_table(tracking.dead_letters()), hide_index=True)
            if st.button("Retry dead letters", key="retry_dead",
                         help="Put the set-aside batches back in line for MLflow."):
                st.success(f"{tracking.retry_dead_letters():,} record(s) back in line.")
        st.caption(f"Spool `{info.spool_path}` · {info.batches_retrying} batch(es) retrying · "
                   f"{info.flushed_records:,} record(s) written by this app process")

# ---------------------------------------------------------------------------- trends
with trends:
    # The answers in view that feedback judged, like every other figure here: served ones by
    # default, and shadow answers too when the sidebar includes them (feedback on a photo
    # judges the challenger's answer to it as well).
    judged = agg.join_feedback(history, filters, feedback)
    fb = mon.feedback_summary(judged)
    c = st.columns(3)
    c[0].metric("Predictions with feedback", f"{fb.feedback:,}",
                help="Answers in view that feedback judged: served answers, plus the challenger's answers "
                     "to the same photos when shadow answers are included in the sidebar")
    c[1].metric("Realized accuracy", percent(fb.accuracy) if fb.feedback else "–",
                help="Share of feedback whose true label equals the model's label")
    c[2].metric("Corrected", f"{fb.feedback - fb.correct:,}")
    daily = agg.daily_trends(history, filters, feedback)
    by_day = mv.daily_accuracy(judged)  # served answers only, a line per version
    measures = {"mean_confidence": "Mean confidence", "error_rate": "Error rate"}
    long = daily.rename(columns=measures).melt("day", list(measures.values()), var_name="measure",
                                               value_name="value").dropna(subset=["value"])
    if len(by_day):
        long = pd.concat([long, pd.DataFrame({
            "day": by_day["day"], "value": by_day["accuracy"],
            "measure": "Realized accuracy, version " + by_day["model_version"].astype(str),
            "judged": by_day["judged"], "low": by_day["low"], "high": by_day["high"]})], ignore_index=True)
    moves = mv.moves_within(state.champion_moves(), long["day"])
    layers = alt.Chart(long, title="Daily trends (UTC days; served answers)").mark_line(point=True).encode(
        x=alt.X("day:T", title=None), y=alt.Y("value:Q", title=None, axis=alt.Axis(format="%")),
        color=alt.Color("measure:N", title=None),
        tooltip=[alt.Tooltip("day:T"), alt.Tooltip("measure"), alt.Tooltip("value:Q", format=VEGA_PERCENT)]
        + ([alt.Tooltip("judged:Q", title="judged answers"), alt.Tooltip("low:Q", format=VEGA_PERCENT, title="95% low"),
            alt.Tooltip("high:Q", format=VEGA_PERCENT, title="95% high")] if len(by_day) else []),
    )
    if len(moves):
        layers += move_rules(moves)
    st.altair_chart(layers, width="stretch")
    st.caption("Realized accuracy is drawn per model version (never pooled across versions); hover a point for "
               "the number of judged answers and the 95% Wilson interval."
               + (" Dashed lines: champion moves (promotions, rollbacks)." if len(moves) else ""))
    if len(pairs):
        dis = mv.disagreement_daily(pairs[pairs["timestamp"] >= ov.first])
        st.markdown("**Champion and challenger disagreement** (same photos, no labels needed)")
        chart = alt.Chart(dis).mark_line(point=True).encode(
            x=alt.X("day:T", title=None), y=alt.Y("rate:Q", title="Share of photos answered differently",
                                                   axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            tooltip=[alt.Tooltip("day:T"), alt.Tooltip("pairs"), alt.Tooltip("disagreements"), alt.Tooltip("rate:Q", format=VEGA_PERCENT),
                     alt.Tooltip("low:Q", format=VEGA_PERCENT, title="95% low"),
                     alt.Tooltip("high:Q", format=VEGA_PERCENT, title="95% high")])
        band = alt.Chart(dis).mark_area(opacity=0.2).encode(x=alt.X("day:T"), y=alt.Y("low:Q"), y2=alt.Y2("high:Q"))
        st.altair_chart(band + chart, width="stretch")
        total_pairs, total_dis = int(dis["pairs"].sum()), int(dis["disagreements"].sum())
        st.caption(f"{total_dis:,} of {total_pairs:,} photos ({percent(total_dis / total_pairs)}) got a different answer "
                   "from the challenger than from the champion; band: 95% Wilson interval per day.")
    if len(joined):  # versions and roles side by side, whichever the view shows
        st.markdown("**Realized accuracy by model version**")
        st.dataframe(percent_columns(mv.accuracy_by_version(joined), ("accuracy", "low", "high")), hide_index=True,
                     column_config={"model_version": st.column_config.TextColumn("version"),
                                    "answers": st.column_config.TextColumn("answers"),
                                    "judged": st.column_config.NumberColumn("judged answers"),
                                    "correct": st.column_config.NumberColumn("correct"),
                                    "accuracy": st.column_config.NumberColumn("accuracy"),
                                    "low": st.column_config.NumberColumn("95% low"),
                                    "high": st.column_config.NumberColumn("95% high")})
        st.caption("Served: answers people were given; shadow: the challenger's answers to the same photos. "
                   "Intervals are 95% Wilson intervals. Labels are compared as written: a version whose "
                   "vocabulary lacks a food (version 1 knows ImageNet's 46) can never be right about it.")
    elif n_outside := len(mon.prepare_feedback(feedback)):  # all of this time range's feedback is filtered out
        st.caption(f"No feedback on the predictions in view; {n_outside:,} feedback record(s) of this time range "
                   "judge predictions the filters leave out"
                   + (" (replayed traffic is hidden: turn off **Hide replayed traffic** in the sidebar)."
                      if hide_replayed and options["replayed"] else "."))
    else:
        st.caption("No feedback on these predictions yet: realized accuracy appears once people confirm "
                   "or correct labels (or `nutrilearn replay --feedback-share`).")
