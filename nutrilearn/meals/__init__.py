"""The meal log: users, meals with a nutrition snapshot, daily totals, streaks, patterns.

Typical use (sidebar, Analyze page, Meals page, CLI)::

    store = MealStore.from_settings(Settings.from_env())
    store.ensure_user("ana", "Europe/Lisbon")
    meal_id = store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch",
                                       portion=1.5, predicted_label="pizza", request_id=rid))
    df = store.meals("ana", start, end)           # local dates, inclusive
    totals = daily_totals(df)
    findings = dietary_patterns(df, store.targets_for("ana"), today=today_in(tz))
"""

from nutrilearn.auth import AccessDenied
from nutrilearn.meals.daily import DAILY_COLUMNS, daily_totals
from nutrilearn.meals.export import meals_to_csv
from nutrilearn.meals.patterns import (
    NOT_ENOUGH_DATA,
    RULES,
    DietaryRule,
    PatternFinding,
    dietary_patterns,
    findings_frame,
    rules_frame,
)
from nutrilearn.meals.records import (
    MANUAL_SOURCE,
    MEAL_TYPES,
    Meal,
    MealEntry,
    UnknownFoodError,
    User,
    manual_facts,
    today_in,
)
from nutrilearn.meals.schema import LATEST_VERSION, SchemaError
from nutrilearn.meals.store import MEAL_COLUMNS, MealStore, NotFoundError, StoreBusyError
from nutrilearn.meals.streak import Streak, streak
from nutrilearn.meals.targets import DEFAULT_TARGETS, NUTRIENTS, Targets, compare_to_targets

__all__ = [
    "AccessDenied", "DAILY_COLUMNS", "DEFAULT_TARGETS", "DietaryRule", "LATEST_VERSION", "MANUAL_SOURCE",
    "MEAL_COLUMNS", "MEAL_TYPES", "Meal", "MealEntry", "MealStore", "NOT_ENOUGH_DATA",
    "NUTRIENTS", "NotFoundError", "PatternFinding", "RULES", "SchemaError", "StoreBusyError",
    "Streak", "Targets", "UnknownFoodError", "User", "compare_to_targets", "daily_totals",
    "dietary_patterns", "findings_frame", "manual_facts", "meals_to_csv", "rules_frame",
    "streak", "today_in",
]
