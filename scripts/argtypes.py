"""argparse ``type=`` validators shared by the scripts: a bad value exits with argparse's usage message and
status 2, naming the option and what it accepts (instead of a traceback deep inside the run)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _finite_float(text, lambda value: value > 0, "> 0")


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return _finite_float(text, lambda value: value >= 0, ">= 0")


def _finite_float(text: str, allowed: Callable[[float], bool], requirement: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {requirement}, got {text!r}") from None
    if not (allowed(value) and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number {requirement}, got {text!r}")
    return value
