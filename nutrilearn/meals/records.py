"""Records that cross module lines: what a caller logs, and what the store returns."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nutrilearn.nutrition import NutritionFacts, validate_portion

from nutrilearn.meals.targets import Targets

MEAL_TYPES: tuple[str, ...] = ("breakfast", "lunch", "dinner", "snack")
MAX_NAME_LEN = 64
MAX_LABEL_LEN = 128
MANUAL_SOURCE = "manual entry"
# Typing-error guards for manual nutrition (per serving).
_MANUAL_MAX = {"serving_g": 5000.0, "kcal": 10_000.0, "protein_g": 1000.0,
               "carbohydrate_g": 1500.0, "fat_g": 1000.0, "fibre_g": 300.0}


class UnknownFoodError(LookupError):
    """The label has no row in the nutrition table and no manual nutrition was given."""


def validate_user_name(name: str) -> str:
    """A user name is 1-64 printable characters after trimming spaces."""
    if not isinstance(name, str):
        raise ValueError("user name must be text")
    clean = name.strip()
    if not clean:
        raise ValueError("user name must not be empty")
    if len(clean) > MAX_NAME_LEN:
        raise ValueError(f"user name must be at most {MAX_NAME_LEN} characters")
    if not clean.isprintable():
        raise ValueError("user name must not contain control characters")
    return clean


def validate_time_zone(name: str) -> str:
    """An IANA time zone name such as 'Europe/Paris' (ValueError otherwise)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Paris'") from exc
    return name


def validate_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError("food label must not be empty")
    clean = label.strip()
    if len(clean) > MAX_LABEL_LEN or not clean.isprintable():
        raise ValueError(f"food label must be at most {MAX_LABEL_LEN} printable characters")
    return clean


def validate_meal_type(meal_type: str) -> str:
    if meal_type not in MEAL_TYPES:
        raise ValueError(f"meal type must be one of {', '.join(MEAL_TYPES)}, got {meal_type!r}")
    return meal_type


def manual_facts(
    label: str,
    *,
    kcal: float,
    protein_g: float,
    carbohydrate_g: float,
    fat_g: float,
    fibre_g: float = 0.0,
    serving_g: float = 100.0,
    name: str | None = None,
) -> NutritionFacts:
    """Per-serving facts typed in by a user for a food the table does not know."""
    clean = validate_label(label)
    values = {"serving_g": serving_g, "kcal": kcal, "protein_g": protein_g,
              "carbohydrate_g": carbohydrate_g, "fat_g": fat_g, "fibre_g": fibre_g}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key} must be a number, got {value!r}") from exc
        if not math.isfinite(number) or number < 0 or number > _MANUAL_MAX[key]:
            raise ValueError(f"{key} must be between 0 and {_MANUAL_MAX[key]:g}, got {value!r}")
        values[key] = number
    if values["serving_g"] == 0:
        raise ValueError("serving_g must be more than 0")
    if values["fibre_g"] > values["carbohydrate_g"]:
        raise ValueError("fibre_g is part of carbohydrate_g and cannot exceed it")
    return NutritionFacts(label=clean, name=(name or clean).strip()[:MAX_LABEL_LEN], source=MANUAL_SOURCE,
                          **values)


def to_utc(moment: dt.datetime, time_zone: str) -> dt.datetime:
    """Aware UTC datetime; a naive ``moment`` is read as wall time in ``time_zone``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class MealEntry:
    """A meal to log.

    ``label`` is what the user confirmed: the prediction, or their correction (then
    ``predicted_label`` differs from it and ``request_id`` ties it to the prediction
    record). ``nutrition`` is per-serving facts typed in by hand; when None the
    nutrition table supplies them. ``eaten_at`` None means now; a naive datetime is
    wall time in the user's time zone.
    """

    user: str
    label: str
    meal_type: str
    portion: float = 1.0
    eaten_at: dt.datetime | None = None
    predicted_label: str | None = None
    request_id: str | None = None
    nutrition: NutritionFacts | None = None

    def __post_init__(self) -> None:
        validate_user_name(self.user)
        validate_label(self.label)
        validate_meal_type(self.meal_type)
        validate_portion(self.portion)
        if self.predicted_label is not None:
            validate_label(self.predicted_label)
        if self.request_id is not None and len(self.request_id) > 64:
            raise ValueError("request_id must be at most 64 characters")

    @property
    def corrected(self) -> bool:
        """True when the user changed the classifier's label."""
        return self.predicted_label is not None and self.predicted_label != self.label


@dataclass(frozen=True)
class Meal:
    """A logged meal as stored: per-serving snapshot plus portion."""

    id: int
    user: str
    eaten_at: dt.datetime  # aware, UTC
    meal_type: str
    portion: float
    per_serving: NutritionFacts
    predicted_label: str | None
    request_id: str | None
    manual: bool

    @property
    def label(self) -> str:
        return self.per_serving.label

    @property
    def totals(self) -> NutritionFacts:
        """The nutrition actually eaten (snapshot times portion)."""
        return self.per_serving.scaled(self.portion)

    def local_time(self, time_zone: str) -> dt.datetime:
        return self.eaten_at.astimezone(ZoneInfo(time_zone))


@dataclass(frozen=True)
class User:
    """A person whose meals are logged; every query is scoped to one."""

    id: int
    name: str
    time_zone: str
    targets: Targets
    # How the login provider names the person (the name is their key: "sub:<subject>").
    display_name: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def today_in(time_zone: str, now: dt.datetime | None = None) -> dt.date:
    """The calendar date right now in ``time_zone`` (the day streaks and windows end on)."""
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    return moment.astimezone(ZoneInfo(time_zone)).date()
