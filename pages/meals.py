"""Meals: history, daily totals against targets, streak, dietary patterns, CSV export.

Thin on purpose: it reads inputs, calls ``nutrilearn.meals`` and draws with altair.
With a login it shows the logged-in user's own log and nobody else's (the store refuses
any other: every call names the acting identity). In local mode it runs under
``st.navigation`` (the user comes from the sidebar's ``st.session_state["user"]``) and alone
(then it offers its own user selector).
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import available_timezones

import altair as alt
import pandas as pd
import streamlit as st

from nutrilearn.meals import (
    MEAL_TYPES,
    NUTRIENTS,
    MealEntry,
    MealStore,
    NotFoundError,
    StoreBusyError,
    Targets,
    UnknownFoodError,
    compare_to_targets,
    daily_totals,
    dietary_patterns,
    findings_frame,
    manual_facts,
    meals_to_csv,
    today_in,
)
from nutrilearn.nutrition import MAX_PORTION, facts_for, known_labels
from nutrilearn_app import state

state.require("own_meals")  # first: also when the page is opened without app.py (see state.require)

USER_ERRORS = (ValueError, StoreBusyError, NotFoundError, UnknownFoodError, PermissionError)
SEVERITY_ICON = {"warning": "🔴", "caution": "🟠", "ok": "🟢", "not enough data": "⚪"}


def _pick_user(store: MealStore) -> str | None:
    """The logged-in user's own log; in local mode the sidebar's user, or a selector when the
    page runs on its own."""
    me = state.identity()
    if me is not None and not me.is_local:
        return me.key
    user = st.session_state.get("user")
    if user:
        return str(user)
    users = store.list_users(actor=state.meal_actor())
    choice = st.selectbox("User", [*users, "New user…"], key="meals_user_pick")
    if choice != "New user…":
        return choice
    name = st.text_input("New user name", key="meals_new_user", max_chars=64)
    return name.strip() or None


st.title("🍽️ Meals")
try:
    store = state.meal_store()
except Exception as exc:  # noqa: BLE001 - any failure to open the database is shown, not raised
    st.error(f"The meal database could not be opened: {exc}")
    st.stop()

name = _pick_user(store)
if not name:
    st.info("Pick or create a user to see their meals.")
    st.stop()
actor = state.meal_actor(name)  # every store call below names who is acting
try:
    browser_tz = getattr(st.context, "timezone", None)
    user = store.ensure_user(name, browser_tz if browser_tz in available_timezones() else "UTC", actor=actor,
                             display_name=None if actor is None or actor.is_local else actor.display_name)
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

tz = user.time_zone
today = today_in(tz)
targets = user.targets
shown_name = user.display_name or user.name
st.caption(f"User **{shown_name}** · times shown in **{tz}** · today is {today:%a %d %b %Y}")

# -- settings: time zone and targets -----------------------------------------------------------
with st.expander("Time zone and daily targets"):
    zones = sorted(available_timezones())
    new_tz = st.selectbox("Time zone", zones, index=zones.index(tz) if tz in zones else 0, key="meals_tz")
    if new_tz != tz and st.button("Save time zone", key="meals_save_tz"):
        store.set_time_zone(user.name, new_tz, actor=actor)
        st.rerun()
    with st.form("meals_targets"):
        st.caption("Defaults: FDA Daily Values for a 2,000 kcal diet (see docs/meals.md).")
        cols = st.columns(len(NUTRIENTS))
        entered = {
            key: col.number_input(f"{label} ({unit})", min_value=1.0, value=float(getattr(targets, key)),
                                  step=1.0, key=f"meals_target_{key}")
            for col, (key, (label, unit)) in zip(cols, NUTRIENTS.items())
        }
        save, reset = st.columns(2)
        if save.form_submit_button("Save targets"):
            try:
                store.set_targets(user.name, Targets(**entered), actor=actor)
                st.rerun()
            except USER_ERRORS as exc:
                st.error(str(exc))
        if reset.form_submit_button("Reset to defaults"):
            store.reset_targets(user.name, actor=actor)
            st.rerun()

# -- log a meal by hand (foods the classifier missed, or not in the table) ---------------------
with st.expander("Log a meal by hand"):
    with st.form("meals_manual", clear_on_submit=True):
        c1, c2, c3, c4 = st.columns(4)
        label = c1.text_input("Food", key="meals_manual_label",
                              help="A known label (e.g. pizza) uses the nutrition table; anything else needs values below.")
        meal_type = c2.selectbox("Meal", MEAL_TYPES, key="meals_manual_type")
        portion = c3.number_input("Portion (servings)", min_value=0.0, max_value=MAX_PORTION, value=1.0,
                                  step=0.25, key="meals_manual_portion")
        eaten_day = c4.date_input("Date", value=today, key="meals_manual_date")
        eaten_time = c4.time_input("Time", value=dt.time(12, 0), key="meals_manual_time")
        st.caption("Nutrition per serving (used when the food is not in the table, or when ticked):")
        use_manual = st.checkbox("Use these values", key="meals_manual_use")
        n = st.columns(6)
        serving_g = n[0].number_input("Serving g", min_value=1.0, value=100.0, key="meals_manual_g")
        values = {key: n[i + 1].number_input(f"{lab} ({unit})", min_value=0.0, value=0.0,
                                             key=f"meals_manual_{key}")
                  for i, (key, (lab, unit)) in enumerate(NUTRIENTS.items())}
        if st.form_submit_button("Log meal"):
            try:
                clean = label.strip()
                typed = any(v > 0 for v in values.values())
                manual = None  # unknown food, nothing typed: the store says what is missing
                if use_manual or (facts_for(clean) is None and typed):
                    manual = manual_facts(clean, serving_g=serving_g, **values)
                meal_id = store.log_meal(MealEntry(
                    user=user.name, label=clean, meal_type=meal_type, portion=portion,
                    eaten_at=dt.datetime.combine(eaten_day, eaten_time), nutrition=manual), actor=actor)
                st.success(f"Logged meal #{meal_id}.")
            except USER_ERRORS as exc:
                st.error(str(exc))

# -- date range ----------------------------------------------------------------------------------
picked = st.date_input("Dates", value=(today - dt.timedelta(days=13), today), key="meals_range")
start, end = (picked if isinstance(picked, (tuple, list)) and len(picked) == 2
              else (picked[0], picked[0]) if isinstance(picked, (tuple, list)) and picked
              else (picked, picked))
meals = store.meals(user.name, start, end, actor=actor)
totals = daily_totals(meals)
run = store.streak(user.name, today, actor=actor)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Current streak", f"{run.current} day{'s' * (run.current != 1)}",
          help="Consecutive days with at least one meal logged, in your time zone. "
               "Today counts once you log; until then the streak runs to yesterday.")
m2.metric("Longest streak", f"{run.longest} day{'s' * (run.longest != 1)}")
today_kcal = float(totals.loc[totals["date"] == today, "kcal"].sum())
m3.metric("Energy today", f"{today_kcal:,.0f} kcal", f"{today_kcal - targets.kcal:+,.0f} vs target",
          delta_color="inverse")
m4.metric("Meals in range", len(meals))

if meals.empty:
    st.info(f"No meals between {start} and {end}. Log one on the Analyze page or above.")
else:
    # -- daily totals against targets ----------------------------------------------------------
    st.subheader("Daily totals against targets")
    compared = compare_to_targets(totals, targets)
    table = compared.pivot(index="date", columns="label", values="percent").round(0)
    table = table.loc[:, [lab for lab, _ in NUTRIENTS.values()]]
    shown = totals.set_index("date").rename(columns={k: f"{lab} ({unit})" for k, (lab, unit) in NUTRIENTS.items()})
    shown = shown.join(table.add_suffix(" % of target"))
    st.dataframe(shown.sort_index(ascending=False).round(1), key="meals_totals_table")

    chart_days = daily_totals(meals, start, end, fill_missing=True)
    macros = chart_days.melt(id_vars="date", value_vars=["protein_g", "carbohydrate_g", "fat_g", "fibre_g"],
                             var_name="nutrient", value_name="grams")
    macros["nutrient"] = macros["nutrient"].map(lambda k: NUTRIENTS[k][0])
    macros["date"] = pd.to_datetime(macros["date"])
    left, right = st.columns(2)
    left.altair_chart(
        alt.Chart(macros, title="Macronutrients per day").mark_bar().encode(
            x=alt.X("yearmonthdate(date):O", title="Day"),
            y=alt.Y("grams:Q", title="grams"),
            xOffset="nutrient:N",
            color=alt.Color("nutrient:N", title=None),
            tooltip=[alt.Tooltip("date:T"), "nutrient:N", alt.Tooltip("grams:Q", format=".1f")],
        ),
        width="stretch",
    )
    energy = chart_days.assign(date=pd.to_datetime(chart_days["date"]), target=targets.kcal,
                               over=chart_days["kcal"] > targets.kcal)
    bars = alt.Chart(energy, title="Calories against target").mark_bar().encode(
        x=alt.X("yearmonthdate(date):O", title="Day"),
        y=alt.Y("kcal:Q", title="kcal"),
        color=alt.Color("over:N", scale=alt.Scale(domain=[False, True], range=["#4c9f70", "#d9534f"]),
                        legend=alt.Legend(title="Over target")),
        tooltip=[alt.Tooltip("date:T"), alt.Tooltip("kcal:Q", format=",.0f"), "target:Q"],
    )
    line = alt.Chart(energy).mark_rule(strokeDash=[6, 3], color="black").encode(y="target:Q")
    right.altair_chart(bars + line, width="stretch")

# -- dietary patterns ---------------------------------------------------------------------------
st.subheader("Dietary patterns")
days = st.slider("Look back (days)", min_value=3, max_value=90, value=14, key="meals_pattern_days")
window = store.meals(user.name, today - dt.timedelta(days=days - 1), today, actor=actor)
findings = dietary_patterns(window, targets, today=today, days=days)
found = findings_frame(findings)
if (found["severity"] == "not enough data").all():
    st.info(f"Patterns need at least 3 logged days in the last {days} days.")
for f in findings:
    if f.present:
        (st.error if f.severity == "warning" else st.warning)(
            f"{f.title}: {f.value:.1f} {f.unit} (rule: {f.rule}; severity {f.severity})")
found.insert(0, "", found["severity"].map(SEVERITY_ICON))
st.dataframe(
    found[["", "title", "value", "unit", "rule", "severity", "days_logged"]].round({"value": 1}),
    hide_index=True, key="meals_patterns_table",
)

# -- history: edit and delete -------------------------------------------------------------------
st.subheader("History")
if not meals.empty:
    history = (meals.assign(time=meals["eaten_at"].dt.strftime("%Y-%m-%d %H:%M"))
               .sort_values(["eaten_at", "id"], ascending=False))
    shown_history = history[["id", "time", "meal_type", "name", "portion", *NUTRIENTS, "corrected", "manual"]]
    st.dataframe(
        shown_history.rename(columns={"meal_type": "meal", "name": "food", **{
            k: f"{lab} ({unit})" for k, (lab, unit) in NUTRIENTS.items()}}).round(1),
        hide_index=True, key="meals_history_table",
    )
    options = {int(r.id): f"#{r.id} · {r.time} · {r.meal_type} · {r.name}" for r in history.itertuples()}
    meal_id = st.selectbox("Meal to edit", list(options), format_func=options.get, key="meals_edit_pick")
    current = history.set_index("id").loc[meal_id]
    with st.form("meals_edit"):
        e1, e2, e3, e4 = st.columns(4)
        labels = sorted(known_labels() | {current["label"]})
        new_label = e1.selectbox("Food", labels, index=labels.index(current["label"]), key="meals_edit_label")
        new_type = e2.selectbox("Meal", MEAL_TYPES, index=MEAL_TYPES.index(current["meal_type"]),
                                key="meals_edit_type")
        new_portion = e3.number_input("Portion (servings)", min_value=0.0, max_value=MAX_PORTION,
                                      value=float(current["portion"]), step=0.25, key="meals_edit_portion")
        new_day = e4.date_input("Date", value=current["eaten_at"].date(), key="meals_edit_date")
        new_time = e4.time_input("Time", value=current["eaten_at"].time().replace(microsecond=0),
                                 key="meals_edit_time")
        if st.form_submit_button("Save changes"):
            try:
                store.update_meal(
                    user.name, meal_id, portion=new_portion, meal_type=new_type,
                    eaten_at=dt.datetime.combine(new_day, new_time),
                    label=new_label if new_label != current["label"] else None, actor=actor,
                )
                st.rerun()
            except USER_ERRORS as exc:
                st.error(str(exc))
    confirm = st.checkbox("Yes, delete this meal", key="meals_delete_confirm")
    if st.button("Delete meal", disabled=not confirm, key="meals_delete"):
        try:
            store.delete_meal(user.name, meal_id, actor=actor)
            st.rerun()
        except USER_ERRORS as exc:
            st.error(str(exc))

st.download_button(
    "Download meals as CSV", data=meals_to_csv(meals),
    file_name=f"meals-{re.sub(r'[^A-Za-z0-9._-]+', '_', shown_name)}-{start}-{end}.csv",
    mime="text/csv", key="meals_download", disabled=meals.empty,
)
