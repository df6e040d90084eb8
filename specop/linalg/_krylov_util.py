"""Small shared pieces of svds, lobpcg, gmres, lsqr and onenormest (backend-free).

Argument checks with messages ``"<arg>: expected ..., got ..."``, row-stored CGS2
orthogonalization, seeded random vectors of any length on an operator's backend,
and input vectors checked against an operator's backend and device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop.operators.base import LinearOperator
from specop.random import probes

__all__ = ["as_operator", "check_nonnegative", "check_bool", "dev", "cgs2", "random_unit", "vector_in",
           "to_host", "finite_or_raise", "eps_of"]


def as_operator(A: Any, what: str, square: bool = False, callable_like: Any = None) -> LinearOperator:
    """``aslinearoperator(A)``; a plain callable ``X -> A @ X`` is wrapped when ``callable_like`` is given.

    ``callable_like`` is the array whose backend, dtype and size (rows) a callable operator takes.
    """
    from specop.operators.concrete import FunctionOperator
    from specop.operators.scipy_bridge import aslinearoperator

    if callable(A) and not isinstance(A, LinearOperator) and callable_like is not None \
            and not hasattr(A, "shape"):
        fn: Callable[[Any], Any] = A
        n = int(callable_like.shape[0])

        def matvec(v: Any) -> Any:
            return fn(v[:, None])[:, 0]

        return FunctionOperator(matvec, (n, n), like=callable_like, symmetric=True, matmat=fn)
    try:
        op = aslinearoperator(A)
    except TypeError as exc:
        raise TypeError(f"{what}: expected a LinearOperator, an array or a scipy matrix/operator, "
                        f"got {type(A).__name__}") from exc
    if square and op.shape[0] != op.shape[1]:
        raise ValueError(f"{what}: expected a square operator, got shape {op.shape}")
    return op


def check_nonnegative(value: Any, name: str, allow_none: bool = False) -> float | None:
    """``float(value)`` for a finite real ``>= 0`` (or None when allowed); ``ValueError`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a bool; ``ValueError`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def dev(A: LinearOperator) -> dict:
    """``{"device": A.device}`` for array constructors (empty for numpy)."""
    return {} if A.device is None else {"device": A.device}


def eps_of(dtype: Any) -> float:
    """Unit roundoff of a dtype of any backend."""
    return float(np.finfo(backends.dtype_name(dtype)).eps)


def cgs2(Q: Any, w: Any, rows: Any) -> tuple[Any, Any]:
    """Orthogonalize ``w`` against rows ``0..rows-1`` of ``Q`` by two passes of classical Gram-Schmidt.

    Returns ``(w, h)`` with ``h`` the coefficients (a device array; ``None`` when ``rows`` is 0).
    Two passes keep orthogonality at rounding level (Giraud, Langou & Rozloznik 2005).
    Where the backend compiles per shape (JAX) the whole ``Q`` is used with the rows from
    ``rows`` on masked out (one program per shape of ``Q``, ``rows`` may be traced inside a
    kernel), and ``h`` has one entry per row of ``Q`` (zero past ``rows``).
    """
    if isinstance(rows, int) and rows == 0:
        return w, None
    xp = backends.namespace_of(Q)
    if backends.compiles_per_shape(xp):
        return _cgs2_masked(xp, Q, w, rows)
    B = Q[:rows, ...]
    h = B @ w
    w = w - h @ B
    h2 = B @ w
    return w - h2 @ B, h + h2


@backends.kernel
def _cgs2_masked(xp: Any, Q: Any, w: Any, rows: Any) -> tuple[Any, Any]:
    """:func:`cgs2` against the rows ``< rows`` of the whole ``Q`` (fixed shape)."""
    mask = backends.row_mask(xp, Q.shape[0], rows, Q)
    h = xp.where(mask, Q @ w, 0.0)
    w = w - h @ Q
    h2 = xp.where(mask, Q @ w, 0.0)
    return w - h2 @ Q, h + h2


def random_unit(A: LinearOperator, n: int, seed: Any, dtype: Any, index: int, Q: Any = None,
                rows: int = 0) -> Any:
    """Seeded Gaussian unit vector of length ``n`` on ``A``'s backend, orthogonal to ``Q[:rows]``."""
    v = probes(n, 1, seed=seed, kind="gaussian", like=A, dtype=dtype, start=index)[:, 0]
    if rows:
        v, _ = cgs2(Q, v, rows)
    return v / A.xp.sqrt(backends.vdot(v, v))


def vector_in(A: LinearOperator, x: Any, size: int, what: str, dtype: Any) -> Any:
    """``x`` checked as a vector of ``size`` on ``A``'s backend and device, cast to ``dtype``.

    A column of shape ``(size, 1)`` is accepted (as scipy does) and flattened.
    """
    if backends.is_array(x) and x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if not backends.is_array(x):
        raise TypeError(f"{what}: expected a {A.backend} array of shape ({size},), got {type(x).__name__}")
    name = backends.backend_name(x)
    if name != A.backend:
        raise TypeError(f"{what}: expected a {A.backend} array (the operator's backend), got a {name} array")
    if not backends.same_device(backends.device_of(x), A.device):
        raise TypeError(f"{what}: expected an array on device {A.device}, got one on {backends.device_of(x)}")
    if x.ndim != 1 or x.shape[0] != size:
        raise ValueError(f"{what}: expected shape ({size},), got {tuple(x.shape)}")
    backends.check_floating(A.xp, x.dtype, what)
    return backends.astype(x, dtype, A.xp)


def to_host(x: Any) -> np.ndarray:
    """A device array as a float64 host array."""
    return np.asarray(backends.to_numpy(x), dtype=np.float64)


def finite_or_raise(values: Any, what: str, step: int) -> None:
    """Raise :class:`NonFiniteError` naming ``step`` when any of ``values`` is NaN or Inf."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise NonFiniteError(f"{what}: a product at iteration {step} returned NaN or Inf")
