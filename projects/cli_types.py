"""Argument types shared by the pipeline's command lines.

MLflow Projects has no integer parameter type and does not validate ``float`` ones, so every
entry point checks its own numbers; an integral float such as ``8000.0`` (what a float-typed
parameter may arrive as) is accepted as the integer it names.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable


def whole_number(text: str) -> int:
    """``"8000"`` or ``"8000.0"`` -> 8000; ``"8000.5"`` and ``"lots"`` -> ValueError."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = whole_number(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def number_in(low: float, high: float, what: str, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[low, high]`` (``(low, high]`` when ``low_open``);
    ``what`` names it in the message ("seconds", "a fraction", ...). NaN and inf never pass."""
    bracket = "(" if low_open else "["

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} in {bracket}{low:g}, {high:g}], got {text!r}")
        return value

    parse.__name__ = what
    return parse


def non_empty(text: str) -> str:
    """Any text but blank (a name, a folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def feedback_source(text: str) -> str:
    """Where a job reads feedback: '' (the gate at the tracking URI), 'none', or a CSV/Parquet file."""
    if text in ("", "none") or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(f"'' (the gate), 'none', or an existing CSV/Parquet file; {text!r} is none of these")
