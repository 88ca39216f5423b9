"""Validators for config values: one place for "an integer, not a bool" and friends.

YAML and Hydra hand over ``true`` as a bool, which Python counts as an int; every check here
rejects it. Each ``*_value`` function raises ``ConfigError`` with one line naming the key, so a
bad value stops a stage the same way wherever it is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import require


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_value(value, key: str, low: int | None = None, high: int | None = None, what: str = "") -> int:
    """``value`` as an int within [low, high] (either bound optional), else a one-line error.

    ``what`` replaces the default description of what is allowed (e.g. "a test-image index").
    """
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not what:
        what = (
            "a positive integer"
            if (low, high) == (1, None)
            else "a non-negative integer"
            if (low, high) == (0, None)
            else f"an integer from {low} to {high}"
            if low is not None and high is not None
            else f"an integer >= {low}"
            if low is not None
            else f"an integer <= {high}"
            if high is not None
            else "an integer"
        )
    require(ok, f"{key}={value!r} must be {what}")
    return int(value)


def positive_int(value, key: str) -> int:
    return int_value(value, key, low=1)


def number_list(value, key: str, length: int | None = None) -> list:
    """A list (YAML list or OmegaConf ListConfig) of numbers, of ``length`` items if given."""
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and all(is_number(v) for v in value)
    )
    require(
        ok and (length is None or len(value) == length),
        f"{key}={value!r} must be a list of {length or 'some'} numbers",
    )
    return list(value)


def fraction(value, key: str) -> float:
    require(is_number(value) and 0 <= value <= 1, f"{key}={value!r} must be a fraction from 0 to 1")
    return float(value)


def below_one(value, key: str) -> float:
    """A rate in [0, 1): a dropout rate, a label-smoothing amount."""
    require(
        is_number(value) and 0 <= value < 1,
        f"{key}={value!r} must be a number from 0 up to (not including) 1",
    )
    return float(value)


def choice(value, key: str, allowed) -> str:
    require(value in allowed, f"{key}={value!r}; allowed: {list(allowed)}")
    return value


def flag(value, key: str, also: tuple = ()) -> bool | str:
    """``true`` or ``false`` (a YAML bool, not a string), or one of ``also`` (e.g. ``auto``)."""
    allowed = ", ".join([*also, "true", "false"])
    require(isinstance(value, bool) or value in also, f"{key}={value!r}; allowed: {allowed}")
    return value


def positive_number(value, key: str) -> float:
    require(is_number(value) and value > 0, f"{key}={value!r} must be a positive number")
    return float(value)
