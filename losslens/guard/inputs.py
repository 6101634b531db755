"""What `Guard.step` accepts: the step as a whole number that fits int64, the loss (and the
optional grad norm, lr, loss scale) as numbers, converted from what a training loop holds.

A loop hands over whatever it has: a Python int or float, a numpy scalar or 0-d array, a
one-element torch tensor (`float(t)` reads it; on a GPU that waits for the device, as
`loss.item()` does). Anything else (a str, None for the loss, a bool, a many-element
array, a step past int64 or with a fraction) is a mistake in the caller's code: it gets
one `InvalidParameterError` line naming the argument, the type and a short form of the
value, never a bare TypeError from deep inside the detectors or the worker's packing.
The common case (a Python int step, float numbers) costs two type checks.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ..errors import InvalidParameterError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_WANT = "a number (int, float, numpy scalar or 0-d array, one-element torch tensor)"


def _shown(x: Any) -> str:
    """The type and a short, one-line, printable form of `x` (it is the caller's data)."""
    try:
        text = repr(x)
    except Exception:  # noqa: BLE001 (a broken __repr__ must not hide the real error)
        text = "?"
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(x).__name__} {text}"


def _not_a_number(x: Any) -> bool:
    """A bool (Python, numpy, or a bool array or tensor) or text: a bug, not a value."""
    return (isinstance(x, (bool, np.bool_, str, bytes, bytearray))
            or str(getattr(x, "dtype", "")) in ("bool", "torch.bool"))


def number(name: str, x: Any, optional: bool = False) -> float | None:
    """`x` as a float (NaN and inf kept: the guard judges them); None stays None where
    `optional`. Raise InvalidParameterError for what is not one number."""
    if type(x) is float:
        return x
    if x is None:
        if optional:
            return None
        raise InvalidParameterError(f"Guard.step: {name} must be {_WANT}, got None")
    if _not_a_number(x):
        raise InvalidParameterError(f"Guard.step: {name} must be {_WANT}, got {_shown(x)}")
    try:
        if hasattr(x, "detach"):  # a torch tensor (a graph's loss: only its value)
            x = x.detach()
        return float(x)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        why = " (too large for a float)" if isinstance(exc, OverflowError) else ""
        raise InvalidParameterError(
            f"Guard.step: {name} must be {_WANT}, got {_shown(x)}{why}") from None


def step_number(x: Any, what: str = "Guard.step: step") -> int:
    """`x` as an int in int64's range: an int, a numpy or torch integer, or a float with no
    fraction (5.0). Raise InvalidParameterError otherwise."""
    if type(x) is int and INT64_MIN <= x <= INT64_MAX:
        return x
    if x is None or _not_a_number(x):
        raise InvalidParameterError(f"{what} must be a whole number, got {_shown(x)}")
    try:
        s = operator.index(x)
    except TypeError:
        try:
            f = float(x)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            raise InvalidParameterError(
                f"{what} must be a whole number, got {_shown(x)}") from None
        if not (math.isfinite(f) and f == math.floor(f)):
            raise InvalidParameterError(
                f"{what} must be a whole number, got {_shown(x)}") from None
        s = int(f)
    if not INT64_MIN <= s <= INT64_MAX:
        raise InvalidParameterError(
            f"{what} must fit a 64-bit integer (|step| < 2**63), got {_shown(x)}")
    return s
