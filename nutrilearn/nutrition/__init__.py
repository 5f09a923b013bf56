"""Per-serving nutrition facts for every food the classifier can name, and portion scaling."""

from nutrilearn.nutrition.table import (
    MAX_PORTION,
    NutritionFacts,
    NutritionTableError,
    facts_for,
    known_labels,
    load_table,
    read_table,
    validate_portion,
)

__all__ = [
    "MAX_PORTION",
    "NutritionFacts",
    "NutritionTableError",
    "facts_for",
    "known_labels",
    "load_table",
    "read_table",
    "validate_portion",
]
