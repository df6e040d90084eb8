"""The :class:`LinearOperator` protocol shared by every operator in specop.

A subclass states its shape, dtype, namespace and device once (``super().__init__``)
and implements **one hook**: ``_matmat(V)`` (columns of ``V`` at once) or
``_matvec(v)``. Everything else is done here, once: input checks, dtype casts,
matmat from matvec (``vmap`` where the backend allows), the adjoint of symmetric
operators, operator algebra, dense export and the scipy bridge.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from specop import backends

__all__ = ["LinearOperator", "check_square", "resolve_like"]


def resolve_like(like: Any = None, dtype: Any = None, device: Any = None) -> tuple[ModuleType, Any, Any]:
    """``(xp, dtype, device)`` of a ``like=`` argument.

    ``like`` may be ``None`` (numpy), a backend name (``"torch"``), an array-API
    namespace, an array or a :class:`LinearOperator`. ``dtype`` may be a dtype
    object or ``"float32"``/``"float64"``; it defaults to the dtype of ``like``
    (float64 for a namespace; float32 for JAX without x64). ``device`` defaults to the device of ``like``
    (for a name or namespace: the backend's default device, where its new arrays go).
    """
    if isinstance(like, LinearOperator):
        xp, base_dtype, base_device = like.xp, like.dtype, like.device
    elif like is None or isinstance(like, str):
        xp = backends.namespace(like or "numpy")
        base_dtype, base_device = backends.default_float(xp), backends.device_of(xp.empty(0))
    elif isinstance(like, ModuleType):
        xp = backends.namespace(backends.backend_name(like))
        base_dtype, base_device = backends.default_float(xp), backends.device_of(xp.empty(0))
    elif backends.is_array(like):
        xp = backends.namespace_of(like)
        base_dtype, base_device = like.dtype, backends.device_of(like)
    else:
        raise TypeError(
            "like: expected None, a backend name, a namespace, an array or a "
            f"LinearOperator, got {type(like).__name__}"
        )
    if isinstance(dtype, str):
        dtype = backends.float_dtype(xp, dtype)
    return xp, base_dtype if dtype is None else dtype, base_device if device is None else device


def check_square(A: LinearOperator, what: str) -> int:
    """Return ``n`` for a square ``A``; ``ValueError`` naming ``what`` otherwise."""
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{what}: expected a LinearOperator, got {type(A).__name__}")
    m, n = A.shape
    if m != n:
        raise ValueError(f"{what}: expected a square operator, got shape {A.shape}")
    return n


class LinearOperator:
    """Abstract linear operator ``A`` of shape ``(m, n)`` on one array backend.

    Subclasses call ``super().__init__(shape, dtype, xp=..., device=...)`` and
    implement ``_matmat(V)`` or ``_matvec(v)`` (and ``_rmatmat`` for a
    non-symmetric operator whose adjoint is needed).

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``.
    dtype : dtype
        float32 or float64 dtype object of ``xp``.
    xp : module
        Array-API namespace of the backend (see :mod:`specop.backends`).
    device : object, optional
        Device the operator's arrays live on (``None`` for numpy).
    symmetric : bool
        Whether ``A == A.T``. Symmetric operators reuse ``matvec`` as ``rmatvec``.
    symmetry_known : bool
        Whether ``symmetric`` is known to be right: by construction (a curvature
        operator, a diagonal, a subclass that computes a symmetric product) or by an
        exact check (a dense or sparse matrix). ``False`` marks a mere claim (a user
        function declared ``symmetric=True``): the symmetric algorithms then test it
        with two products (``check_symmetric="auto"``, see :func:`specop.eigsh`).

    Notes
    -----
    Vectors must be arrays of the operator's backend and device (``TypeError``
    otherwise). A float vector of another precision is cast to the operator's
    dtype; integer, boolean and complex vectors are rejected.
    """

    __array_ufunc__ = None  # let ``ndarray @ op`` reach __rmatmul__

    def __init__(self, shape: tuple[int, int], dtype: Any, *, xp: ModuleType,
                 device: Any = None, symmetric: bool = False, symmetry_known: bool = True) -> None:
        if (len(shape) != 2 or not all(isinstance(s, numbers.Integral) and s >= 1 for s in shape)):
            raise ValueError(f"shape: expected two positive integers, got {shape!r}")
        backends.check_floating(xp, dtype, type(self).__name__)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.xp = xp
        self.device = device
        self.is_symmetric = bool(symmetric) and self.shape[0] == self.shape[1]
        self.symmetry_known = bool(symmetry_known)

    # ------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        """The operator's state with its namespace (a module) as the backend name and its device picklable."""
        state = self.__dict__.copy()
        state["xp"] = backends.backend_name(self.xp)
        state["device"] = backends.device_state(self.xp, self.device)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["xp"] = backends.namespace(state["xp"])
        state["device"] = backends.restore_device(state["xp"], state["device"])
        self.__dict__.update(state)

    # ----------------------------------------------------------------- hooks
    def _matmat(self, V: Any) -> Any:
        if type(self)._matvec is LinearOperator._matvec:
            raise TypeError(f"{type(self).__name__} implements neither _matmat nor _matvec")
        return backends.batched_apply(self._matvec, V, self.xp)

    def _matvec(self, v: Any) -> Any:
        return self._matmat(v[:, None])[:, 0]

    def _rmatmat(self, V: Any) -> Any:
        if self.is_symmetric:
            return self._matmat(V)
        raise TypeError(
            f"{type(self).__name__} is not symmetric and has no adjoint product; "
            "implement _rmatmat (or pass rmatvec=/symmetric=True to FunctionOperator)"
        )

    # ------------------------------------------------------------ public API
    @property
    def backend(self) -> str:
        """Name of the backend (``'numpy'``, ``'torch'``, ``'jax'``, ...)."""
        return backends.backend_name(self.xp)

    def _check_input(self, x: Any, ndim: int, size: int, what: str) -> Any:
        if not backends.is_array(x):
            raise TypeError(f"{what}: expected a {self.backend} array, got {type(x).__name__}")
        name = backends.backend_name(x)
        if name != self.backend:
            raise TypeError(f"{what}: the operator is a {self.backend} operator but the input is a {name} array")
        dev = backends.device_of(x)
        if not backends.same_device(dev, self.device):
            raise TypeError(f"{what}: the operator is on device {self.device} but the input is on {dev}")
        if x.ndim != ndim or x.shape[0] != size:
            want = f"({size},)" if ndim == 1 else f"({size}, k)"
            raise ValueError(
                f"{what}: operator of shape {self.shape} expects input of shape {want}, got {tuple(x.shape)}"
            )
        if x.dtype != self.dtype:
            backends.check_floating(self.xp, x.dtype, what)
            x = self.xp.astype(x, self.dtype)
        return x

    def matvec(self, v: Any) -> Any:
        """``A @ v`` for a vector ``v`` of shape ``(n,)``; returns shape ``(m,)``."""
        return self._matvec(self._check_input(v, 1, self.shape[1], "matvec"))

    def matmat(self, V: Any) -> Any:
        """``A @ V`` for ``V`` of shape ``(n, k)``; returns shape ``(m, k)``."""
        V = self._check_input(V, 2, self.shape[1], "matmat")
        return self._no_columns(self.shape[0]) if V.shape[1] == 0 else self._matmat(V)

    def rmatvec(self, v: Any) -> Any:
        """``A.T @ v`` for ``v`` of shape ``(m,)``."""
        v = self._check_input(v, 1, self.shape[0], "rmatvec")
        return self._rmatmat(v[:, None])[:, 0]

    def rmatmat(self, V: Any) -> Any:
        """``A.T @ V`` for ``V`` of shape ``(m, k)``."""
        V = self._check_input(V, 2, self.shape[0], "rmatmat")
        return self._no_columns(self.shape[1]) if V.shape[1] == 0 else self._rmatmat(V)

    def _no_columns(self, rows: int) -> Any:
        """The ``(rows, 0)`` result of a product with zero columns (nothing to apply)."""
        kw = {} if self.device is None else {"device": self.device}
        return self.xp.zeros((rows, 0), dtype=self.dtype, **kw)

    def to_dense(self) -> Any:
        """The operator as a dense ``(m, n)`` array of its backend (small problems, tests)."""
        return self._matmat(backends.eye(self.xp, self.shape[1], self.dtype, self.device))

    def _asymmetry(self) -> float | None:
        """``max |A - A^T| / max |A|`` where it is cheap to get without products (stored matrices), else None;
        NaN for a stored matrix with NaN or Inf entries."""
        return None

    def to_scipy(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` view (numpy in, numpy out)."""
        from specop.operators.scipy_bridge import to_scipy

        return to_scipy(self)

    @property
    def args(self) -> tuple[Any, ...]:
        """The operands of a composite operator, as scipy's ``LinearOperator.args`` (``()`` for a leaf)."""
        return ()

    # --------------------------------------------------------------- algebra
    def dot(self, x: Any) -> Any:
        """scipy's ``A.dot(x)``: ``A @ x`` for an operator or an array of ndim 1 or 2, ``x * A`` for a scalar."""
        if isinstance(x, LinearOperator) or (backends.is_array(x) and x.ndim in (1, 2)):
            return self @ x
        if isinstance(x, numbers.Number) or (backends.is_array(x) and x.ndim == 0):
            return self * x
        shape = f"an array of shape {tuple(x.shape)}" if backends.is_array(x) else f"a {type(x).__name__}"
        raise ValueError(f"A.dot(x): expected a 1-d or 2-d array, a scalar or a LinearOperator, got {shape}")

    def __pow__(self, p: Any) -> LinearOperator:
        """``A ** p``: the ``p``-th power for an integer ``p >= 0`` of a square operator (lazy; ``p`` products)."""
        from specop.operators.algebra import PowerOperator

        return PowerOperator(self, p)

    def __matmul__(self, x: Any) -> Any:
        if isinstance(x, LinearOperator):
            from specop.operators.algebra import ProductOperator

            return ProductOperator(self, x)
        if backends.is_array(x) and x.ndim == 1:
            return self.matvec(x)
        if backends.is_array(x) and x.ndim == 2:
            return self.matmat(x)
        raise TypeError(f"A @ x: expected an array of ndim 1 or 2 or a LinearOperator, got {type(x).__name__}")

    def __rmatmul__(self, x: Any) -> Any:
        if backends.is_array(x) and x.ndim == 1:
            return self.rmatvec(x)
        if backends.is_array(x) and x.ndim == 2:
            return self.rmatmat(x.T).T
        return NotImplemented

    def __add__(self, other: Any) -> LinearOperator:
        from specop.operators.algebra import SumOperator

        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, other)

    def __sub__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return self + (-other)

    def __mul__(self, c: Any) -> LinearOperator:
        from specop.operators.algebra import ScaledOperator

        if isinstance(c, LinearOperator):
            raise TypeError("A * B is not defined for operators; use A @ B for the product")
        return ScaledOperator(self, c)

    __rmul__ = __mul__

    def __truediv__(self, c: Any) -> LinearOperator:
        import math

        from specop._validate import fail
        from specop.operators.algebra import as_scale

        x = as_scale(c, self, "A / c")
        if x == 0.0 or not math.isfinite(1.0 / x):
            raise fail("A / c", "a non-zero scalar whose reciprocal is finite", c)
        return self * (1.0 / x)

    def __neg__(self) -> LinearOperator:
        return self * -1.0

    def __pos__(self) -> LinearOperator:
        return self

    def transpose(self) -> LinearOperator:
        """The lazy transpose ``A.T`` (``A`` itself when symmetric)."""
        if self.is_symmetric:
            return self
        from specop.operators.algebra import TransposeOperator

        return TransposeOperator(self)

    adjoint = transpose

    @property
    def T(self) -> LinearOperator:  # noqa: N802 - numpy's name
        """The transpose (real operators: also the adjoint)."""
        return self.transpose()

    H = T

    def shift(self, sigma: float) -> LinearOperator:
        """The lazy shifted operator ``A - sigma * I`` (square ``A`` only)."""
        from specop.operators.algebra import ShiftedOperator

        return ShiftedOperator(self, sigma)

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={self.device}"
        sym = ", symmetric" if self.is_symmetric else ""
        return (f"<{self.shape[0]}x{self.shape[1]} {type(self).__name__} "
                f"({self.backend}, {backends.dtype_name(self.dtype)}{dev}{sym})>")
