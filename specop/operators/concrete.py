"""Concrete operators: dense, diagonal, identity and user functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop._validate import Described, check_bool, check_callable, check_positive_int, fail
from specop.operators.base import LinearOperator, resolve_like

__all__ = ["DenseOperator", "DiagonalOperator", "IdentityOperator", "FunctionOperator", "check_result"]


def _check_array(a: Any, ndim: int, what: str) -> Any:
    if not backends.is_array(a):
        raise TypeError(f"{what}: expected an array of {backends.BACKENDS}, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{what}: expected a {ndim}-D array, got shape {tuple(a.shape)}")
    xp = backends.namespace_of(a)
    backends.check_floating(xp, a.dtype, what)
    return xp


@backends.kernel
def _transposed_product(xp: Any, A: Any, V: Any) -> Any:
    """``A^T V``; on JAX as ``(V^T A)^T``, one program: XLA on CPU copies ``A^T`` before ``A^T @ V``
    (64 ms against 6 ms for a 2000 x 2000 ``A`` and one column)."""
    if backends.compiles_per_shape(xp):
        return (V.T @ A).T
    return A.T @ V


@backends.kernel
def _equals_transpose(xp: Any, a: Any) -> Any:
    """``all(a == a.T)``: one program on JAX (three eager compiles otherwise)."""
    return xp.all(a == a.T)


@backends.kernel
def _column_product(xp: Any, M: Any, v: Any) -> Any:
    """``M @ v`` of a vector, as the one-column product (one program on JAX: no eager indexing around it)."""
    return (M @ v[:, None])[:, 0]


class DenseOperator(LinearOperator):
    """A dense matrix held as an array of any backend.

    Parameters
    ----------
    array : array, shape (m, n)
        float32 or float64 array of numpy, torch, jax, cupy or array-api-strict.
    symmetric : bool, optional
        Whether the matrix is symmetric. ``None`` (default) checks ``A == A.T``
        exactly; ``True`` is taken as a claim (``symmetry_known`` False: the symmetric
        algorithms test it with two products).
    """

    def __init__(self, array: Any, *, symmetric: bool | None = None) -> None:
        xp = _check_array(array, 2, "DenseOperator")
        known = symmetric is None
        if symmetric is None:
            symmetric = array.shape[0] == array.shape[1] and bool(_equals_transpose(xp, array))
        check_bool(symmetric, "symmetric")
        self.array = array
        super().__init__(tuple(array.shape), array.dtype, xp=xp, device=backends.device_of(array),
                         symmetric=symmetric, symmetry_known=known)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.device = backends.device_of(self.array)  # where the reloaded array lives

    def _matmat(self, V: Any) -> Any:
        return self.array @ V

    def _matvec(self, v: Any) -> Any:
        return _column_product(self.xp, self.array, v)

    def _rmatmat(self, V: Any) -> Any:
        return _transposed_product(self.xp, self.array, V)

    def to_dense(self) -> Any:
        return self.array

    def _asymmetry(self) -> float | None:
        if self.shape[0] != self.shape[1]:
            return None
        D = backends.to_numpy(self.array).astype(np.float64)
        if not np.isfinite(D).all():
            return float("nan")
        top = float(np.max(np.abs(D)))
        return float(np.max(np.abs(D - D.T))) / top if top > 0 else 0.0


class DiagonalOperator(LinearOperator):
    """``diag(d)`` for a 1-D array ``d`` of any backend."""

    def __init__(self, d: Any) -> None:
        xp = _check_array(d, 1, "DiagonalOperator")
        self.diagonal = d
        n = d.shape[0]
        super().__init__((n, n), d.dtype, xp=xp, device=backends.device_of(d), symmetric=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.device = backends.device_of(self.diagonal)  # where the reloaded array lives

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
        n = check_positive_int(n, "n")
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
        Whether the operator is symmetric (then ``rmatvec`` is ``matvec``). A claim
        that the symmetric algorithms test with two products (``check_symmetric="auto"``).
    rmatvec : callable, optional
        ``v -> A.T @ v`` for a non-symmetric operator.
    matmat : callable, optional
        ``V -> A @ V`` for a block of columns, when the user has a faster one.
    device : optional
        Device; default that of ``like``.

    Notes
    -----
    Every result of the user functions is checked by its attributes (no data is read):
    an array of another backend or of the wrong shape, dtype or device raises at once,
    naming the function and what it returned.
    """

    def __init__(self, matvec: Callable[[Any], Any], shape: tuple[int, int], dtype: Any = None, *,
                 like: Any = None, symmetric: bool = False, rmatvec: Callable[[Any], Any] | None = None,
                 matmat: Callable[[Any], Any] | None = None, device: Any = None) -> None:
        check_callable(matvec, "matvec", optional=False)
        check_callable(rmatvec, "rmatvec")
        check_callable(matmat, "matmat")
        check_bool(symmetric, "symmetric")
        xp, dtype, device = resolve_like(like, dtype, device)
        self._fn, self._rfn, self._mfn = matvec, rmatvec, matmat
        # symmetric=True (or False) is the user's word about a function nobody has looked into
        super().__init__(shape, dtype, xp=xp, device=device, symmetric=symmetric, symmetry_known=False)

    def _matvec(self, v: Any) -> Any:
        return self._result(self._fn(v), (self.shape[0],), self._fn)

    def _matmat(self, V: Any) -> Any:
        if self._mfn is not None:
            return self._result(self._mfn(V), (self.shape[0], V.shape[1]), self._mfn)
        return self._batched(self._fn, V, self.shape[0])

    def _rmatmat(self, V: Any) -> Any:
        if self._rfn is None:
            return super()._rmatmat(V)
        return self._batched(self._rfn, V, self.shape[1])

    def _batched(self, fn: Callable[[Any], Any], V: Any, rows: int) -> Any:
        Y = backends.batched_apply(fn, V, self.xp, check=lambda y: self._result(y, (rows,), fn))
        return self._result(Y, (rows, V.shape[1]), fn)

    def _result(self, y: Any, shape: tuple[int, ...], fn: Callable[[Any], Any]) -> Any:
        """``y`` if the user function returned what the operator promises (attributes only, no data read)."""
        return check_result(self, y, shape, f"FunctionOperator {_name(fn)}")


def _name(fn: Any) -> str:
    """A user function's name for a message: ``module.qualname`` where it has one."""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{getattr(fn, '__module__', None) or '?'}.{name}"


def check_result(op: LinearOperator, y: Any, shape: tuple[int, ...], what: str) -> Any:
    """``y`` if it is an array of ``op``'s backend, ``shape``, dtype and device; a clear error otherwise.

    For the products of user-supplied functions: a wrong shape or another backend's array
    must fail here, naming the function and what it returned, not later in an algorithm.
    Only attributes are read (no synchronisation).
    """
    want = f"a {op.backend} array of shape {shape} and dtype {backends.dtype_name(op.dtype)}"
    if not backends.is_array(y):
        raise fail(what, want, Described(f"an object of type {type(y).__name__}"), TypeError)
    try:
        name = backends.backend_name(y)
    except TypeError:
        name = type(y).__name__
    if name != op.backend:
        raise fail(what, want, Described(f"a {name} array"), TypeError)
    if tuple(y.shape) != tuple(shape):
        raise fail(what, want, Described(f"an array of shape {tuple(y.shape)}"))
    if y.dtype != op.dtype:
        raise fail(what, want, Described(f"an array of dtype {backends.dtype_name(y.dtype)}"), TypeError)
    try:
        dev = backends.device_of(y)
    except Exception:  # a traced value (inside jit/vmap) has no concrete device
        return y
    if not backends.same_device(dev, op.device):
        raise fail(what, f"{want} on device {op.device}", Described(f"an array on device {dev}"), TypeError)
    return y
