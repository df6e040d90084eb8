"""Argument checks shared by every public function, with one message style.

Every refusal reads ``"<argument>: expected <what>, got <value>"``, so a user sees at once
which argument was wrong, what would have been accepted and what was passed. Values are
checked before any work starts (and before a function picks a code path, so that the
small dense path refuses what the Krylov path refuses). Type errors of a whole object
(an array where an operator was expected, ...) are ``TypeError``; every other bad
argument, including a wrongly typed number, is ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Described", "fail", "check_positive_int", "check_choice", "check_bool", "check_real", "check_tolerance",
           "check_seed", "check_bounds", "check_callable", "check_path"]


class Described(str):
    """A description of what was got ("a vector with NaN entries"), shown as is, not as a repr."""


def fail(argument: str, expected: str, got: Any, kind: type[Exception] = ValueError) -> Exception:
    """The exception ``kind("<argument>: expected <expected>, got <got>")`` (to ``raise``).

    ``got`` is the value passed (shown by its repr, or by type and shape for an array) or a
    :class:`Described` text.
    """
    return kind(f"{argument}: expected {expected}, got {_show(got)}")


def _show(value: Any) -> str:
    """A short text for ``value`` in a message: its repr for scalars and strings, else its type."""
    if isinstance(value, Described):
        return str(value)
    if value is None or isinstance(value, (bool, numbers.Number, str, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list)) and len(value) <= 8:
        return repr(value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return f"an object of type {type(value).__name__}"


def check_positive_int(value: Any, name: str, low: int = 1) -> int:
    """``int(value)`` for an integer ``>= low`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise fail(name, f"an integer >= {low}", value)
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    try:
        ok = value in tuple(choices)
    except Exception:  # an array compared with strings
        ok = False
    if not ok or isinstance(value, bool) != any(isinstance(c, bool) for c in choices if c == value):
        raise fail(name, f"one of {tuple(choices)}", value)
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy booleans too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(name, "True or False", value)
    return bool(value)


def _real(value: Any) -> float | None:
    """``float(value)`` for a real number (Python, numpy or a 0-d array), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None:
        try:
            arr = np.asarray(value)
        except Exception:  # an accelerator array: through the backend seam
            from specop import backends

            arr = np.asarray(backends.to_numpy(value))
        if arr.dtype.kind in "fiu":
            return float(arr)
    return None


def check_real(value: Any, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, finite: bool = True) -> float:
    """``float(value)`` for a real number in ``[low, high]`` (``(low, high]`` with ``low_open``), finite by default."""
    x = _real(value)
    parts = ["a finite real number" if finite else "a real number"]
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    expected = " ".join(parts[:1]) + ("" if len(parts) == 1 else " " + " and ".join(parts[1:]))
    if x is None or (finite and not math.isfinite(x)) or math.isnan(x):
        raise fail(name, expected, value)
    if low is not None and (x < low or (low_open and x == low)):
        raise fail(name, expected, value)
    if high is not None and x > high:
        raise fail(name, expected, value)
    return x


def check_tolerance(value: Any, name: str = "tol") -> float:
    """A relative tolerance: a finite real ``>= 0`` (NaN and Inf are refused: Inf would accept anything)."""
    return check_real(value, name, low=0.0)


def check_seed(seed: Any, name: str = "seed") -> Any:
    """``seed`` if it is None, a non-negative integer or a numpy Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise fail(name, "a non-negative int, a numpy Generator or None", seed)
    return int(seed)


def check_bounds(bounds: Any, name: str = "bounds") -> tuple[float, float] | None:
    """``None`` or a pair ``(lo, hi)`` of finite reals with ``lo < hi``."""
    if bounds is None:
        return None
    expected = "None or a pair (lo, hi) of finite real numbers with lo < hi"
    from specop import backends

    if backends.is_array(bounds):  # an array of any backend: its values, on the host
        bounds = np.asarray(backends.to_numpy(bounds))
    if isinstance(bounds, (str, bytes)) or not isinstance(bounds, (Sequence, np.ndarray)):
        raise fail(name, expected, bounds)
    if isinstance(bounds, np.ndarray) and bounds.ndim != 1:
        raise fail(name, expected, bounds)
    items = list(bounds)
    if len(items) != 2:
        raise fail(name, expected, bounds)
    lo, hi = (_real(b) for b in items)
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise fail(name, expected, bounds)
    return lo, hi


def check_callable(value: Any, name: str, optional: bool = True) -> Callable[..., Any] | None:
    """``value`` if it is callable (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        raise fail(name, "a callable" + (" or None" if optional else ""), value, TypeError)
    return value


def check_path(value: Any, name: str) -> os.PathLike | str | None:
    """``value`` if it is None, a string or a path-like object."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return value
    raise fail(name, "None, a str or a path-like object", value, TypeError)
