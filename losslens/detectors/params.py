"""Checks of detector fields, shared by every detector's `validate()` (split from spike.py,
which re-exports them): a field out of its range is one InvalidParameterError naming the
detector, the field, its value and what is allowed."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidParameterError


def require(obj: Any, name: str, ok: bool, allowed: str) -> None:
    """Raise InvalidParameterError naming the detector field, its value and the allowed range."""
    if not ok:
        value = getattr(obj, name)
        raise InvalidParameterError(
            f"{type(obj).__name__}.{name} must be {allowed}, got {value!r}")


def validate_once(det: Any) -> None:
    """`det.validate()`, once per detector object: its fields are frozen, and a run of 10^5
    tags asked it of every detector for every tag (~0.1 ms each)."""
    if det.__dict__.get("_validated") is not True:
        det.validate()
        object.__setattr__(det, "_validated", True)


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and bool(np.isfinite(value)))
