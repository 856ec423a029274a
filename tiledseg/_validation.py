"""Argument validators shared by the public functions.

Errors follow one form: what is wrong, what is allowed, then ``Received: name=value``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def validate_choice(value: Any, allowed: Iterable[str], name: str) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError naming the closest."""
    allowed = list(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, allowed, n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(f"`{name}` must be one of {allowed}.{hint} Received: {name}={value!r}")


def validate_range(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check that a finite number lies in a range; the error prints the interval and the value.

    NaN and infinities are refused whatever the range (every comparison with NaN is false, so
    a range check alone would let it through). NumPy scalars count as numbers.
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool | np.bool_) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"`{name}` must be in {left}{lo}, {hi}{right}. Received: {name}={value!r}")
    return value
