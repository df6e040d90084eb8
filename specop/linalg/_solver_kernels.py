"""The small kernels of the solver driver (``specop.linalg._solver_common``) and of the solver steps.

Each is a :func:`specop.backends.kernel` (one compiled program per block shape on JAX, the plain
expressions elsewhere) or a helper used inside one.
"""

from __future__ import annotations

from typing import Any

from specop import backends
from specop.operators.base import LinearOperator

__all__ = ["apply", "cdot", "colnorms", "finish_step", "residual_norms", "status", "take_columns"]


def apply(A: LinearOperator, V: Any, rdt: Any) -> Any:
    """``A @ V`` with ``V`` in ``rdt``: the product in ``A``'s dtype, the result back in ``rdt``."""
    xp = A.xp
    return backends.astype(A.matmat(backends.astype(V, A.dtype, xp)), rdt, xp)


def cdot(xp: Any, U: Any, V: Any) -> Any:
    """Column-wise inner products ``sum_i U[i, j] V[i, j]`` (device array of shape ``(k,)``)."""
    return xp.sum(U * V, axis=0)


@backends.kernel
def colnorms(xp: Any, X: Any) -> Any:
    """Column 2-norms ``sqrt(sum_i X[i, j]^2)`` (device array of shape ``(k,)``)."""
    return xp.sqrt(cdot(xp, X, X))


@backends.kernel
def residual_norms(xp: Any, B: Any, idx: Any, AX: Any) -> tuple[Any, Any]:
    """``R = B[:, idx] - AX`` and its column norms."""
    R = _take(xp, B, idx) - AX
    return R, xp.sqrt(cdot(xp, R, R))


def status(xp: Any, like: Any, *cases: tuple[Any, float]) -> Any:
    """Status codes: the value of the first ``(mask, value)`` case that holds, 0 where none does."""
    code = xp.zeros_like(like)
    for mask, value in reversed(cases):
        code = xp.where(mask, code * 0.0 + value, code)
    return code


def finish_step(xp: Any, res: Any, code: Any, active: Any, finite: Any) -> tuple[Any, Any]:
    """The end of every kernel step: NaN codes where a value was not finite, the new active mask,
    and the ``(2, k)`` report ``[res; code]`` the driver reads (for use inside kernels)."""
    code = xp.where(active & ~finite, xp.nan, code)
    return active & (code == 0), xp.stack([res, code])


def _take(xp: Any, arr: Any, idx: Any) -> Any:
    return xp.take(arr, idx, axis=arr.ndim - 1)


@backends.kernel
def take_columns(xp: Any, arrays: dict[str, Any], idx: Any) -> dict[str, Any]:
    """The columns ``idx`` (last axis) of every array of ``arrays`` (one program for a whole state)."""
    return {name: _take(xp, v, idx) for name, v in arrays.items()}
