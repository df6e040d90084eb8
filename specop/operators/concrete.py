"""Concrete operators: dense, diagonal, identity and user functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from specop import backends
from specop.operators.base import LinearOperator, resolve_like

__all__ = ["DenseOperator", "DiagonalOperator", "IdentityOperator", "FunctionOperator"]


def _check_array(a: Any, ndim: int, what: str) -> Any:
    if not backends.is_array(a):
        raise TypeError(f"{what}: expected an array of {backends.BACKENDS}, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{what}: expected a {ndim}-D array, got shape {tuple(a.shape)}")
    xp = backends.namespace_of(a)
    backends.check_floating(xp, a.dtype, what)
    return xp


class DenseOperator(LinearOperator):
    """A dense matrix held as an array of any backend.

    Parameters
    ----------
    array : array, shape (m, n)
        float32 or float64 array of numpy, torch, jax, cupy or array-api-strict.
    symmetric : bool, optional
        Whether the matrix is symmetric. ``None`` (default) checks ``A == A.T``
        exactly.
    """

    def __init__(self, array: Any, *, symmetric: bool | None = None) -> None:
        xp = _check_array(array, 2, "DenseOperator")
        if symmetric is None:
            symmetric = array.shape[0] == array.shape[1] and bool(xp.all(array == array.T))
        self.array = array
        super().__init__(tuple(array.shape), array.dtype, xp=xp,
                         device=backends.device_of(array), symmetric=symmetric)

    def _matmat(self, V: Any) -> Any:
        return self.array @ V

    def _rmatmat(self, V: Any) -> Any:
        return self.array.T @ V

    def to_dense(self) -> Any:
        return self.array


class DiagonalOperator(LinearOperator):
    """``diag(d)`` for a 1-D array ``d`` of any backend."""

    def __init__(self, d: Any) -> None:
        xp = _check_array(d, 1, "DiagonalOperator")
        self.diagonal = d
        n = d.shape[0]
        super().__init__((n, n), d.dtype, xp=xp, device=backends.device_of(d), symmetric=True)

    def _matmat(self, V: Any) -> Any:
        return self.diagonal[:, None] * V


class IdentityOperator(LinearOperator):
    """The ``n x n`` identity.

    Parameters
    ----------
    n : int
        Size.
    like : optional
        Backend source: an array, an operator, a namespace or a backend name
        (default numpy). dtype and device default to those of ``like``.
    dtype, device : optional
        Override the dtype (object or ``"float32"``/``"float64"``) and device.
    """

    def __init__(self, n: int, *, like: Any = None, dtype: Any = None, device: Any = None) -> None:
        xp, dtype, device = resolve_like(like, dtype, device)
        super().__init__((n, n), dtype, xp=xp, device=device, symmetric=True)

    def _matmat(self, V: Any) -> Any:
        return self.xp.asarray(V, copy=True)


class FunctionOperator(LinearOperator):
    """An operator defined by a Python function ``v -> A @ v``.

    Parameters
    ----------
    matvec : callable
        Maps an array of shape ``(n,)`` to shape ``(m,)``, on the operator's
        backend and device. It is vmapped for ``matmat`` where the backend allows
        (torch.func / jax), looped otherwise.
    shape : tuple of int
        ``(m, n)``.
    dtype : optional
        dtype object or ``"float32"``/``"float64"``; default that of ``like``.
    like : optional
        Backend source: array, operator, namespace or backend name (default numpy).
    symmetric : bool
        Whether the operator is symmetric (then ``rmatvec`` is ``matvec``).
    rmatvec : callable, optional
        ``v -> A.T @ v`` for a non-symmetric operator.
    matmat : callable, optional
        ``V -> A @ V`` for a block of columns, when the user has a faster one.
    device : optional
        Device; default that of ``like``.
    """

    def __init__(self, matvec: Callable[[Any], Any], shape: tuple[int, int], dtype: Any = None, *,
                 like: Any = None, symmetric: bool = False, rmatvec: Callable[[Any], Any] | None = None,
                 matmat: Callable[[Any], Any] | None = None, device: Any = None) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec: expected a callable, got {type(matvec).__name__}")
        xp, dtype, device = resolve_like(like, dtype, device)
        self._fn, self._rfn, self._mfn = matvec, rmatvec, matmat
        super().__init__(shape, dtype, xp=xp, device=device, symmetric=symmetric)

    def _matvec(self, v: Any) -> Any:
        return self._fn(v)

    def _matmat(self, V: Any) -> Any:
        if self._mfn is not None:
            return self._mfn(V)
        return backends.batched_apply(self._fn, V, self.xp)

    def _rmatmat(self, V: Any) -> Any:
        if self._rfn is None:
            return super()._rmatmat(V)
        return backends.batched_apply(self._rfn, V, self.xp)
