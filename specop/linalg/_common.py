"""Shared checks and small kernels of the algorithms (backend-free)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop.operators.base import LinearOperator, check_square
from specop.random import probes

__all__ = ["check_positive_int", "check_choice", "recurrence_dtype", "start_vector", "dot",
           "norm", "check_finite", "check_symmetric", "prepare"]

REORTH = ("full", "selective", "none")


def check_positive_int(value: Any, name: str, low: int = 1) -> int:
    """``int(value)`` if it is an integer ``>= low``; ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; ``ValueError`` naming them otherwise."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def recurrence_dtype(A: LinearOperator, name: str | None) -> Any:
    """dtype of the Lanczos vectors and scalars: ``name`` (default float64) where available."""
    if name is None:
        return A.dtype
    return backends.promote_dtype(A.xp, A.dtype, name)


def prepare(A: Any, what: str, check_symmetry: bool = False, seed: Any = 0) -> tuple[LinearOperator, int]:
    """Turn ``A`` into a square operator and optionally check its symmetry."""
    from specop.operators.scipy_bridge import aslinearoperator

    A = aslinearoperator(A)
    n = check_square(A, what)
    if check_symmetry:
        check_symmetric(A, what, seed=seed)
    return A, n


def start_vector(A: LinearOperator, v0: Any, seed: Any, dtype: Any, what: str, index: int = 0) -> Any:
    """Unit start vector in ``dtype``: ``v0`` normalised, or seeded Gaussian probe ``index``."""
    n = A.shape[0]
    if v0 is None:
        v = probes(n, 1, seed=seed, kind="gaussian", like=A, dtype=dtype, start=index)[:, 0]
    else:
        v = A._check_input(v0, 1, n, f"{what}: v0")
        v = A.xp.astype(v, dtype)
    nv = norm(A.xp, v)
    if not float(nv) > 0.0:
        raise ValueError(f"{what}: v0 must be a non-zero finite vector, got norm {float(nv)}")
    return v / nv


def dot(xp: Any, u: Any, v: Any) -> Any:
    """``u . v`` of two vectors as a 0-d array (one pass, no host synchronisation)."""
    return backends.vdot(u, v)


def norm(xp: Any, v: Any) -> Any:
    """Euclidean norm of a vector as a 0-d array (no host synchronisation)."""
    return xp.sqrt(backends.vdot(v, v))


def check_finite(values: np.ndarray, what: str, first_step: int) -> None:
    """Raise :class:`NonFiniteError` naming the first step with a NaN/Inf value."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise NonFiniteError(f"{what}: the matvec at step {step} returned NaN or Inf")


def check_symmetric(A: LinearOperator, what: str, seed: Any = 0, rtol: float | None = None) -> None:
    """Cheap randomized symmetry test: ``|y.Ax - x.Ay|`` against ``||Ax|| ||y||``.

    Two matvecs with random vectors ``x, y``; a symmetric operator passes up to
    rounding (``rtol`` defaults to ``1e3 * eps`` of the operator dtype times sqrt(n)).
    Raises ``ValueError`` for an operator that is clearly not symmetric.
    """
    n = A.shape[0]
    X = probes(n, 2, seed=seed, kind="gaussian", like=A)
    AX = A.matmat(X)
    Xh, AXh = backends.to_numpy(X).astype(np.float64), backends.to_numpy(AX).astype(np.float64)
    lhs, rhs = Xh[:, 1] @ AXh[:, 0], Xh[:, 0] @ AXh[:, 1]
    scale = np.linalg.norm(AXh[:, 0]) * np.linalg.norm(Xh[:, 1]) + np.linalg.norm(AXh[:, 1]) * np.linalg.norm(Xh[:, 0])
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    tol = (1e3 * eps * np.sqrt(n)) if rtol is None else rtol
    if not abs(lhs - rhs) <= tol * scale:
        raise ValueError(
            f"{what}: the operator is not symmetric: y.(A x) = {lhs:.6g} but x.(A y) = {rhs:.6g} "
            f"(relative difference {abs(lhs - rhs) / max(float(scale), 1e-300):.2e} > {tol:.1e})"
        )
