"""Shared checks and small kernels of the algorithms (backend-free)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop._validate import Described, check_choice, check_positive_int, fail
from specop.operators.base import LinearOperator, check_square
from specop.random import probes

__all__ = ["check_positive_int", "check_choice", "recurrence_dtype", "check_v0", "start_vector", "dot", "device_norm",
           "norm", "column_norms", "host_norms", "host_hypot", "check_finite", "check_symmetric", "ensure_symmetric",
           "symmetry_refusal", "rounding_asymmetry", "prepare", "SYMMETRY_MODES"]

REORTH = ("full", "selective", "none")


def recurrence_dtype(A: LinearOperator, name: str | None) -> Any:
    """dtype of the Lanczos vectors and scalars: ``name`` (default float64) where available."""
    check_choice(name, "recurrence_dtype", ("float64", "float32", None))
    if name is None:
        return A.dtype
    return backends.promote_dtype(A.xp, A.dtype, name)


def prepare(A: Any, what: str, symmetric: bool = True) -> tuple[LinearOperator, int]:
    """Turn ``A`` into a square operator (see :func:`specop.aslinearoperator`).

    A raw :class:`scipy.sparse.linalg.LinearOperator` handed to a symmetric algorithm
    (``symmetric=True``) is taken as a claim of symmetry, as scipy's ``eigsh`` takes it:
    it is wrapped with ``symmetric=True`` and tested like any claim (:func:`ensure_symmetric`).
    """
    import scipy.sparse.linalg as spla

    from specop.operators.scipy_bridge import ScipyOperator, aslinearoperator

    op = aslinearoperator(A)
    if symmetric and isinstance(op, ScipyOperator) and isinstance(A, spla.LinearOperator) and op.op is A:
        op = ScipyOperator(A, symmetric=True)
    n = check_square(op, what)
    return op, n


def check_v0(A: LinearOperator, v0: Any, what: str) -> Any:
    """``v0`` on ``A``'s backend, device and dtype, of shape ``(n,)``, finite and non-zero (or None).

    Checked before any product, so that a bad start vector is blamed on ``v0`` and never on a
    later matvec.
    """
    if v0 is None:
        return None
    v = A._check_input(v0, 1, A.shape[0], f"{what}: v0")
    nv = float(norm(A.xp, A.xp.astype(v, backends.promote_dtype(A.xp, A.dtype)), True))
    if not math.isfinite(nv):
        raise fail(f"{what}: v0", "a finite non-zero vector", Described("a vector with NaN or Inf entries"))
    if nv == 0.0:
        raise fail(f"{what}: v0", "a finite non-zero vector", Described("the zero vector"))
    return v


def start_vector(A: LinearOperator, v0: Any, seed: Any, dtype: Any, what: str, index: int = 0) -> Any:
    """Unit start vector in ``dtype``: ``v0`` normalised, or seeded Gaussian probe ``index``."""
    n = A.shape[0]
    if v0 is None and backends.compiles_per_shape(A.xp):  # built on the host, one transfer (no compiles)
        h = probes(n, 1, seed=seed, kind="gaussian", dtype=backends.dtype_name(dtype), start=index)[:, 0]
        return backends.from_numpy(h / host_norms(h[:, None])[0], A.xp, A.device, dtype)
    if v0 is None:
        v = probes(n, 1, seed=seed, kind="gaussian", like=A, dtype=dtype, start=index)[:, 0]
    else:
        v = A.xp.astype(check_v0(A, v0, what), dtype)
    nv = norm(A.xp, v, backends.is_host(A.xp, A.device))
    if not float(nv) > 0.0:  # a probe cannot be zero; a v0 was checked (a float32 cast cannot zero it either)
        raise fail(f"{what}: v0", "a finite non-zero vector", Described(f"one of norm {float(nv)}"))
    return v / nv


def dot(xp: Any, u: Any, v: Any) -> Any:
    """``u . v`` of two vectors as a 0-d array (one pass, no host synchronisation)."""
    return backends.vdot(u, v)


@functools.lru_cache(maxsize=64)
def _safe_range(dtype: Any) -> tuple[float, float]:
    """``(lo, hi)``: a sum of squares inside this open interval lost nothing to underflow or overflow.

    Below ``lo = tiny / eps^2`` the squares that underflowed to zero (each below ``tiny``) could
    matter at the ``eps`` level; at or above ``hi`` (the largest finite value) a square overflowed.
    """
    info = np.finfo(backends.dtype_name(dtype))
    return float(info.tiny) / float(info.eps) ** 2, float(info.max)


def norm(xp: Any, v: Any, host: bool = True) -> Any:
    """Euclidean norm of a vector as a 0-d array, free of overflow and underflow.

    ``sqrt(v . v)`` overflows once ``|v| > sqrt(max)`` (1e154 in float64) and underflows
    to zero below ``sqrt(tiny)`` (1e-154): a norm that breaks at a scale every entry of
    ``v`` survives. The scaled norm ``s sqrt(sum((v / s)^2))`` with ``s = max |v|``
    (LAPACK's ``dnrm2`` idea) is exact at every scale. On the host (``host=True``:
    reading a scalar is free) the plain ``v . v`` is used when it is safely in range,
    so ordinary inputs cost what they did; on an accelerator the scaled form is always
    used (two more passes over ``v``, no host synchronisation).
    """
    with np.errstate(over="ignore", under="ignore"):  # an out-of-range v . v is detected below
        ss = backends.vdot(v, v)
    if host:
        lo, hi = _safe_range(v.dtype)
        if lo < float(ss) < hi:
            return xp.sqrt(ss)
    return _scaled_norm(xp, v, None)


def device_norm(xp: Any, v: Any) -> Any:
    """:func:`norm` without a host read (for compiled kernels): the branch is chosen on the device."""
    with np.errstate(over="ignore", under="ignore"):
        ss = backends.vdot(v, v)
    lo, hi = _safe_range(v.dtype)
    return xp.where((ss > lo) & (ss < hi), xp.sqrt(ss), _scaled_norm(xp, v, None))


def column_norms(xp: Any, W: Any, host: bool = True) -> Any:
    """Euclidean norms of the columns of ``W`` (n, b) as a (b,) array, scaled like :func:`norm`."""
    with np.errstate(over="ignore", under="ignore"):
        ss = xp.sum(W * W, axis=0)
    if host:
        lo, hi = _safe_range(W.dtype)
        h = backends.to_numpy(ss)
        if bool(np.all((h > lo) & (h < hi))):
            return xp.sqrt(ss)
    return _scaled_norm(xp, W, 0)


def _scaled_norm(xp: Any, v: Any, axis: int | None) -> Any:
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):  # NaN/Inf in v give NaN, checked by callers
        s = xp.max(xp.abs(v), axis=axis)
        s = xp.where(s > 0, s, xp.ones_like(s))  # a zero vector: 0 / 1, not 0 / 0
        u = v / s
        return s * xp.sqrt(xp.sum(u * u, axis=axis))


def host_norms(M: np.ndarray, axis: int = 0) -> np.ndarray:
    """Euclidean norms along ``axis`` of a host float64 array, scaled where the plain sum of squares
    would underflow or overflow (``numpy.linalg.norm``, bit for bit, everywhere else)."""
    M = np.asarray(M, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        ss = np.sum(M * M, axis=axis)
    lo, hi = _safe_range(np.float64)
    if M.size == 0 or bool(np.all((ss > lo) & (ss < hi))):
        return np.sqrt(ss)
    s = np.max(np.abs(M), axis=axis, keepdims=True)
    s = np.where(s > 0, s, 1.0)
    return np.squeeze(s, axis=axis) * np.sqrt(np.sum((M / s) ** 2, axis=axis))


def host_hypot(values: Any) -> float:
    """``sqrt(sum(v^2))`` of host floats, exact at every scale (``math.hypot``) where the plain sum is not."""
    with np.errstate(over="ignore", under="ignore"):
        ss = sum(v * v for v in values)
    lo, hi = _safe_range(np.float64)
    return math.sqrt(ss) if (lo < ss < hi or not values) else math.hypot(*values)


def check_finite(values: np.ndarray, what: str, first_step: int) -> None:
    """Raise :class:`NonFiniteError` naming the first step with a NaN/Inf value."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise NonFiniteError(f"{what}: the matvec at step {step} returned NaN or Inf")


#: Seed of the two probes of the randomized symmetry test (fixed: the test does not depend on a run's seed).
SYMMETRY_SEED = 0x5EC1
#: The values of ``check_symmetric`` (see :func:`ensure_symmetric`).
SYMMETRY_MODES = ("auto", True, False)


def ensure_symmetric(A: LinearOperator, what: str, mode: Any, products: bool = True) -> int:
    """Refuse an operator that is not symmetric; returns the products spent (0 or 2).

    ``mode`` is the ``check_symmetric`` argument of the algorithms:

    * ``"auto"`` (default): an operator whose symmetry is known (``A.symmetry_known``: by
      construction or an exact check) costs nothing; one that merely claims
      ``is_symmetric`` (a ``FunctionOperator(symmetric=True)``) gets the randomized
      two-product test :func:`check_symmetric`; one with ``is_symmetric=False`` is refused,
      unless it is a stored matrix whose whole-matrix asymmetry is within rounding
      (:func:`rounding_asymmetry`; no products).
    * ``True``: the two-product test for every operator that claims symmetry.
    * ``False``: no check; the operator is used as is (the caller vouches for it).

    ``products=False`` (a caller that checks the whole matrix itself) only refuses the flag.
    """
    check_choice(mode, "check_symmetric", SYMMETRY_MODES)
    if mode is False:
        return 0
    if not A.is_symmetric:
        rel = A._asymmetry()
        if rel is not None and not math.isfinite(rel):
            raise NonFiniteError(f"{what}: A holds NaN or Inf entries")
        if rel is not None and rel <= rounding_asymmetry(A):
            return 0  # a stored matrix symmetric to the rounding of its entries (Z Z^T + U D U^T, ...)
        if rel is not None:  # a stored matrix: say how far from symmetric it is
            why = (f"is not symmetric (max |A - A^T| = {rel:.2e} max |A| > {rounding_asymmetry(A):.1e} max |A|, "
                   "the rounding allowance),")
        elif A.symmetry_known:
            why = "is not symmetric (is_symmetric=False, by construction);"
        else:
            why = "is not declared symmetric (is_symmetric=False): build it with symmetric=True if it is, or"
        raise fail(f"{what}: A", "a symmetric operator",
                   Described(f"{A!r}, which {why} pass check_symmetric=False to use it as is"))
    if not products or (mode == "auto" and A.symmetry_known):
        return 0
    check_symmetric(A, what)
    return 2


def rounding_asymmetry(A: LinearOperator) -> float:
    """Relative asymmetry ``max |A - A^T| / max |A|`` that rounding explains: ``1e3 eps sqrt(n)``.

    The allowance of the randomized test, of the dense path's whole-matrix test and of a
    stored matrix flagged ``is_symmetric=False`` by its exact check (``M = Z Z^T + U D U^T``
    formed in floating point is symmetric only to rounding).
    """
    return 1e3 * float(np.finfo(backends.dtype_name(A.dtype)).eps) * math.sqrt(A.shape[0])


def symmetry_refusal(what: str, detail: str) -> ValueError:
    """The error for an operator found not to be symmetric (``detail``: the numbers), naming the opt-out."""
    return ValueError(f"{what}: A: expected a symmetric operator, got one that is not symmetric: {detail}; "
                      "pass check_symmetric=False to use it as is")


def check_symmetric(A: LinearOperator, what: str, seed: Any = SYMMETRY_SEED, rtol: float | None = None) -> None:
    """Cheap randomized symmetry test: ``|y.Ax - x.Ay|`` against ``||Ax|| ||y|| + ||Ay|| ||x||``.

    Two matvecs (one ``matmat``) with fixed Gaussian vectors ``x, y``; a symmetric operator
    passes up to rounding (``rtol`` defaults to ``1e3 * eps`` of the operator dtype times
    sqrt(n)). Raises ``ValueError`` for an operator that is clearly not symmetric.
    """
    n = A.shape[0]
    X = probes(n, 2, seed=seed, kind="gaussian", like=A)
    AX = A.matmat(X)
    Xh, AXh = backends.to_numpy(X).astype(np.float64), backends.to_numpy(AX).astype(np.float64)
    if not np.isfinite(AXh).all():
        raise NonFiniteError(f"{what}: the matvec of the symmetry test (two products) returned NaN or Inf")
    lhs, rhs = Xh[:, 1] @ AXh[:, 0], Xh[:, 0] @ AXh[:, 1]
    na, nx = host_norms(AXh), host_norms(Xh)
    scale = na[0] * nx[1] + na[1] * nx[0]
    tol = rounding_asymmetry(A) if rtol is None else rtol
    if not abs(lhs - rhs) <= tol * scale:
        raise symmetry_refusal(what, f"y.(A x) = {lhs:.6g} but x.(A y) = {rhs:.6g} (relative difference "
                               f"{abs(lhs - rhs) / max(float(scale), 1e-300):.2e} > {tol:.1e}, two random x, y)")
