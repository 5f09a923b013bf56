"""Argument types more than one subcommand takes: numbers refused at parse time, so a bad
``--n`` is a usage error (exit 2, the option named) rather than a failure halfway through."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


def checked(convert: Callable[[str], T], ok: Callable[[T], bool], message: str) -> Callable[[str], T]:
    """An argparse ``type``: ``convert(text)``, refused with ``message`` unless ``ok(value)``
    (NaN fails every check, so it is refused too)."""
    def parse(text: str) -> T:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(message)
        return value

    parse.__name__ = convert.__name__  # argparse says "invalid int value: 'x'" for text that is no number
    return parse


positive_int = checked(int, lambda v: v >= 1, "must be at least 1")
positive_float = checked(float, lambda v: v > 0, "must be positive")
non_negative = checked(float, lambda v: v >= 0, "must not be negative")
share = checked(float, lambda v: 0 <= v <= 1, "must be between 0 and 1")
