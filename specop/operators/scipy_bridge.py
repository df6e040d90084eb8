"""Both directions between specop and :mod:`scipy.sparse.linalg`.

``op.to_scipy()`` gives a real :class:`scipy.sparse.linalg.LinearOperator` (numpy in,
numpy out; data moves to and from the operator's device), accepted by ``eigsh``,
``cg``, ``minres``, ``lobpcg`` and ``expm_multiply``. :func:`aslinearoperator`
turns arrays of every backend, scipy sparse matrices/arrays and scipy linear
operators into specop operators.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as spla

from specop import backends
from specop._validate import Described, fail
from specop.operators.base import LinearOperator
from specop.operators.concrete import DenseOperator

__all__ = ["aslinearoperator", "to_scipy", "SparseOperator", "ScipyOperator"]


class _ScipyView(spla.LinearOperator):
    """scipy view of a specop operator (numpy arrays in and out)."""

    def __init__(self, op: LinearOperator) -> None:
        self.op = op
        self.args = (op,)  # scipy's operators list their operands in ``args`` (MatrixLinearOperator: (A,))
        super().__init__(dtype=np.dtype(backends.dtype_name(op.dtype)), shape=op.shape)

    def _move(self, x: np.ndarray) -> Any:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":  # a cast would drop the imaginary part silently
            raise fail(f"{type(self.op).__name__}.to_scipy() view", f"a real {self.dtype} vector",
                       Described(f"one of dtype {x.dtype} (apply the real and imaginary parts separately)"), TypeError)
        return backends.from_numpy(np.asarray(x, dtype=self.dtype), self.op.xp, self.op.device, self.op.dtype)

    @staticmethod
    def _back(y: Any) -> np.ndarray:
        out = backends.to_numpy(y)
        return out if out.flags.writeable else out.copy()

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._back(self.op.matvec(self._move(np.ravel(x))))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._back(self.op.matmat(self._move(X)))

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._back(self.op.rmatvec(self._move(np.ravel(x))))

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._back(self.op.rmatmat(self._move(X)))


def to_scipy(op: LinearOperator) -> spla.LinearOperator:
    """A :class:`scipy.sparse.linalg.LinearOperator` that applies ``op``."""
    return _ScipyView(op)


class SparseOperator(LinearOperator):
    """A scipy sparse matrix or array (numpy backend)."""

    def __init__(self, matrix: Any, *, symmetric: bool | None = None) -> None:
        A = scipy.sparse.csr_array(matrix)
        backends.check_floating(np, A.dtype.type, "SparseOperator")
        known = symmetric is None  # checked exactly; an explicit True is a claim
        if symmetric is None:
            symmetric = A.shape[0] == A.shape[1] and (A != A.T).nnz == 0
        self.matrix = A
        super().__init__(A.shape, A.dtype.type, xp=backends.namespace("numpy"), symmetric=symmetric,
                         symmetry_known=known)

    def _matmat(self, V: Any) -> Any:
        return np.asarray(self.matrix @ V)

    def _rmatmat(self, V: Any) -> Any:
        return np.asarray(self.matrix.T @ V)

    def to_dense(self) -> Any:
        return self.matrix.toarray()

    def _asymmetry(self) -> float | None:
        if self.shape[0] != self.shape[1]:
            return None
        if not np.isfinite(self.matrix.data).all():
            return float("nan")
        top = float(abs(self.matrix).max()) if self.matrix.nnz else 0.0
        diff = self.matrix - self.matrix.T
        return float(abs(diff).max()) / top if top > 0 and diff.nnz else 0.0


class ScipyOperator(LinearOperator):
    """A :class:`scipy.sparse.linalg.LinearOperator` wrapped for specop (numpy backend)."""

    def __init__(self, op: spla.LinearOperator, *, symmetric: bool = False) -> None:
        dtype = np.dtype(op.dtype if op.dtype is not None else np.float64)
        backends.check_floating(np, dtype.type, "ScipyOperator")
        self.op = op
        super().__init__(op.shape, dtype.type, xp=backends.namespace("numpy"), symmetric=symmetric,
                         symmetry_known=False)

    def _matmat(self, V: Any) -> Any:
        return self._result(self.op.matmat(V), (self.shape[0], V.shape[1]), "matmat")

    def _rmatmat(self, V: Any) -> Any:
        if self.is_symmetric:
            return self._matmat(V)
        if _no_adjoint(self.op):  # scipy's own rmatmat would fail with "'NoneType' object is not callable"
            raise NoAdjointError(f"ScipyOperator: the wrapped {type(self.op).__name__} of shape {self.shape} has no "
                                 "adjoint product (built without rmatvec= or rmatmat=); pass rmatvec= to scipy's "
                                 "LinearOperator, or symmetric=True to aslinearoperator if it is symmetric")
        return self._result(self.op.rmatmat(V), (self.shape[1], V.shape[1]), "rmatmat")

    def _result(self, y: Any, shape: tuple[int, int], which: str) -> np.ndarray:
        """The wrapped operator's product as a numpy array of the operator's dtype, checked (shape, real)."""
        if type(y) is not np.ndarray:
            y = np.asarray(y.toarray() if scipy.sparse.issparse(y) else y)
        if y.dtype.kind not in "fiu" or y.shape != shape:
            what = f"ScipyOperator ({type(self.op).__name__}.{which})"
            got = f"an array of dtype {y.dtype}" if y.dtype.kind not in "fiu" else f"an array of shape {y.shape}"
            raise fail(what, f"a real array of shape {shape}", Described(got),
                       TypeError if y.dtype.kind not in "fiu" else ValueError)
        return y.astype(self.dtype, copy=False)


class NoAdjointError(TypeError, NotImplementedError):
    """A product with the adjoint of an operator that has none: specop's ``TypeError`` and scipy's
    ``NotImplementedError("rmatvec is not defined")`` at once (``specop.sparse.linalg`` mirrors scipy)."""


def _no_adjoint(op: spla.LinearOperator) -> bool:
    """Whether ``op`` is scipy's LinearOperator(matvec=...) built without ``rmatvec``/``rmatmat``."""
    custom = "_CustomLinearOperator"
    return (type(op).__name__ == custom and getattr(op, f"{custom}__rmatvec_impl", False) is None
            and getattr(op, f"{custom}__rmatmat_impl", False) is None)


def aslinearoperator(x: Any, *, symmetric: bool | None = None) -> LinearOperator:
    """Turn ``x`` into a specop :class:`LinearOperator`.

    Parameters
    ----------
    x : operator, array, scipy sparse matrix/array or scipy LinearOperator
        A specop operator is returned as is; a 2-D float array of numpy, torch,
        jax, cupy or array-api-strict becomes a :class:`DenseOperator` on its
        backend and device; scipy sparse input a :class:`SparseOperator`; a scipy
        ``LinearOperator`` a :class:`ScipyOperator` (a view made by
        :meth:`LinearOperator.to_scipy` is unwrapped back to its operator).
    symmetric : bool, optional
        Declares symmetry. ``None`` checks it exactly for dense and sparse input
        and assumes non-symmetric for scipy operators.
    """
    if isinstance(x, LinearOperator):
        return x
    if isinstance(x, _ScipyView):
        return x.op
    if scipy.sparse.issparse(x):
        return SparseOperator(x, symmetric=symmetric)
    if isinstance(x, spla.LinearOperator):
        return ScipyOperator(x, symmetric=bool(symmetric))
    if backends.is_array(x):
        return DenseOperator(x, symmetric=symmetric)
    raise TypeError(
        "aslinearoperator: expected a LinearOperator, a 2-D array, a scipy sparse matrix or a "
        f"scipy LinearOperator, got {type(x).__name__}"
    )
