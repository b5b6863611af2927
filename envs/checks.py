"""Argument checks shared by every env: each returns the cleaned value or raises ``ValueError`` naming the
argument, what is allowed and what was given (never a raw ``int()``/``float()`` error)."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_number(
    name: str, value: Any, *, low: float = -np.inf, high: float = np.inf, strict_low: bool = False
) -> float:
    """Validate a finite number in ``[low, high]`` (``(low, high]`` if ``strict_low``); return it as float."""
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if number < low or (strict_low and number == low) or number > high:
        left = "(" if strict_low else "["
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}], got {value!r}")
    return number


def check_integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Validate a whole number (an int, or a float without a fraction) in ``[low, high]``; return it as int."""
    allowed = f"an integer{f' >= {low}' if low is not None else ''}{f' and <= {high}' if high is not None else ''}"
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if not np.isfinite(number) or number != int(number):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    integer = int(number)
    if (low is not None and integer < low) or (high is not None and integer > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return integer


def check_range(
    name: str, value: Any, *, low: float = -np.inf, high: float = np.inf, positive: bool = False
) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair of finite numbers with ``low <= high``, both ends in ``[low, high]``
    (``> 0`` if ``positive``); raise ``ValueError`` naming it."""
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if len(pair) != 2 or not all(np.isfinite(pair)) or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {value!r}")
    if pair[0] < low or (positive and pair[0] <= 0) or pair[1] > high:
        bound = "> 0" if positive else f">= {low:g}"
        upper = f" and <= {high:g}" if np.isfinite(high) else ""
        raise ValueError(f"{name} must have both ends {bound}{upper}, got {value!r}")
    return pair  # type: ignore[return-value]
