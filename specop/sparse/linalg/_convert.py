"""Conversions shared by the scipy-compatible functions: inputs to operators, results to the input's backend.

scipy accepts integer matrices (and casts them to float64), vectors of shape ``(n, 1)`` and
Python lists; specop's algorithms take float operators and arrays of the operator's backend.
These helpers bridge the two and raise scipy's exceptions (same type, same message) where
scipy raises.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as spla

from specop import backends
from specop._errors import ConvergenceWarning
from specop.operators import FunctionOperator
from specop.operators import LinearOperator as _Base
from specop.operators import aslinearoperator as _aslinop

__all__ = ["as_operator", "as_claimed_symmetric", "vector", "to_backend", "not_yet", "quiet", "reemit", "is_complex"]

PLANNED = "is planned (specop issue 16, item 2) and not implemented yet"


def is_complex(A: Any) -> bool:
    """Whether ``A`` (array, scipy matrix or operator of any kind) has a complex dtype."""
    dtype = getattr(A, "dtype", None)
    if dtype is None:
        return False
    if backends.is_array(A):
        return backends.dtype_name(dtype).startswith("complex")
    try:
        return np.dtype(dtype).kind == "c"
    except TypeError:
        return False


def not_yet(argument: str, detail: str = "") -> NotImplementedError:
    """The error for an argument of scipy's that specop cannot honour yet (never ignored silently)."""
    return NotImplementedError(f"{argument}: {detail or 'this argument'} {PLANNED}; "
                               "use scipy.sparse.linalg for it meanwhile (numpy only)")


def as_operator(A: Any, what: str) -> _Base:
    """``A`` as a specop operator; integer and boolean matrices become float64 (scipy's cast)."""
    if is_complex(A):
        raise not_yet(f"{what}: A", f"a complex operator (dtype {A.dtype})")
    if backends.is_array(A):
        name = backends.dtype_name(A.dtype)
        if name.startswith(("int", "uint", "bool")):
            xp = backends.namespace_of(A)
            A = xp.astype(A, backends.promote_dtype(xp, backends.default_float(xp)))
    elif scipy.sparse.issparse(A) and A.dtype.kind in "iub":
        A = A.astype(np.float64)
    elif isinstance(A, spla.LinearOperator) and A.dtype is not None and np.dtype(A.dtype).kind in "iub":
        A = _FloatView(A)
    elif isinstance(A, list | tuple):
        A = np.asarray(A, dtype=np.float64)
    return _aslinop(A)


def user_inverse(op: Any, name: str, n: int) -> _Base:
    """The user's ``Minv`` / ``OPinv`` as an operator, refused (naming ``name``) unless it is ``(n, n)`` like A."""
    user = as_operator(op, "eigsh")
    if tuple(user.shape) != (n, n):
        raise ValueError(f"{name}: expected shape {(n, n)} like A, got {tuple(user.shape)}")
    return user


class _FloatView(spla.LinearOperator):
    """A float64 view of an integer scipy operator (scipy computes such products in float64)."""

    def __init__(self, op: spla.LinearOperator) -> None:
        self.op = op
        super().__init__(dtype=np.dtype(np.float64), shape=op.shape)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.matmat(X), dtype=np.float64)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.rmatmat(X), dtype=np.float64)


def as_claimed_symmetric(op: _Base) -> _Base:
    """``op`` taken as symmetric the way scipy's ``eigsh`` takes any operator.

    An operator whose symmetry nobody has checked (``symmetry_known=False``: a user function,
    a scipy operator) becomes a *claim* of symmetry, which specop's symmetric algorithms test
    with two products; a stored matrix keeps its exact check (an asymmetric one is refused).
    """
    if op.is_symmetric or op.symmetry_known:
        return op
    return FunctionOperator(op.matvec, op.shape, op.dtype, like=op, symmetric=True, matmat=op.matmat,
                            device=op.device)


def vector(op: _Base, x: Any, name: str, size: int, shape_of_a: tuple[int, int]) -> Any:
    """``x`` of shape ``(size,)`` or ``(size, 1)`` as a vector of ``op``'s backend (scipy's ``make_system``).

    A list becomes an array of the operator's backend; any other shape raises scipy's
    ``ValueError('shapes of A ... and b ... are incompatible')``.
    """
    if not backends.is_array(x):
        if isinstance(x, list | tuple) or np.isscalar(x):
            x = backends.from_numpy(np.asarray(x, dtype=np.float64), op.xp, op.device, op.dtype)
        else:
            raise TypeError(f"{name}: expected a {op.backend} array, got {type(x).__name__}")
    if (other := backends.backend_name(x)) != op.backend:  # before any arithmetic mixes the two
        raise TypeError(f"{name}: the operator is a {op.backend} operator but the input is a {other} array")
    shape = tuple(x.shape)
    if shape not in ((size,), (size, 1)):
        raise ValueError(f"shapes of A {shape_of_a} and {name} {shape} are incompatible")
    if is_complex(x):
        raise not_yet(name, f"a complex {name}")
    if backends.dtype_name(x.dtype).startswith(("int", "uint", "bool")):
        x = backends.namespace_of(x).astype(x, op.dtype)
    return op.xp.reshape(x, (size,)) if len(shape) == 2 else x


def to_backend(values: Any, op: _Base, dtype: Any = None) -> Any:
    """Host numbers (a numpy array) as an array of ``op``'s backend and device, in ``dtype`` (default ``op.dtype``)."""
    return backends.from_numpy(np.asarray(values), op.xp, op.device, op.dtype if dtype is None else dtype)


@contextlib.contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Record specop's :class:`~specop.ConvergenceWarning` (scipy reports through ``info``/exceptions instead).

    Other warnings pass through unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield caught
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def reemit(caught: list[warnings.WarningMessage]) -> None:
    """Warn again the :class:`~specop.ConvergenceWarning` recorded by :func:`quiet` (a result that converged
    but whose multiplicity check did not settle: scipy has no way to say so, specop warns)."""
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def value_order(w: np.ndarray, which: str) -> np.ndarray:
    """ARPACK's order of eigenvalues when no vectors are asked for: the least wanted first."""
    if which == "LM":
        return np.argsort(np.abs(w), kind="stable")
    if which == "SM":
        return np.argsort(-np.abs(w), kind="stable")
    if which == "SA":
        return np.argsort(-w, kind="stable")
    return np.argsort(w, kind="stable")  # LA, BE: ascending
