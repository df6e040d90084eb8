"""scipy's ``LinearOperator``, ``aslinearoperator``, ``expm_multiply`` and ``onenormest`` for every backend.

``LinearOperator`` is scipy's constructor and base class over specop's protocol: called as
``LinearOperator(shape, matvec, rmatvec=None, matmat=None, dtype=None, rmatmat=None)`` it
builds an operator from functions (on the backend named by ``like=``, numpy by default);
subclassed, it takes scipy's ``super().__init__(dtype, shape)`` and scipy's hooks ``_matvec``,
``_matmat``, ``_rmatvec``, ``_rmatmat`` and ``_adjoint``. Every specop operator is an instance
of it, so ``isinstance(aslinearoperator(x), LinearOperator)`` holds as in scipy.

``expm_multiply`` is specop's Lanczos approximation (symmetric ``A``; Saad, "Analysis of some
Krylov subspace approximations to the matrix exponential operator", SIAM J. Numer. Anal. 29,
1992); ``onenormest`` is Higham & Tisseur's block 1-norm estimator (SIAM J. Matrix Anal.
Appl. 21, 2000, Algorithm 2.4).
"""

from __future__ import annotations

from abc import ABCMeta
from collections.abc import Callable
from typing import Any

from specop import backends
from specop.linalg import expm_multiply as _expm_multiply
from specop.linalg import onenormest as _onenormest
from specop.linalg._common import ensure_symmetric
from specop.operators import FunctionOperator
from specop.operators import LinearOperator as _Base
from specop.operators.base import resolve_like
from specop.sparse.linalg._convert import as_claimed_symmetric, as_operator, is_complex, not_yet

__all__ = ["LinearOperator", "aslinearoperator", "expm_multiply", "onenormest"]


class LinearOperator(_Base, metaclass=ABCMeta):
    """scipy's :class:`scipy.sparse.linalg.LinearOperator` on any specop backend.

    ``LinearOperator(shape, matvec, rmatvec=None, matmat=None, dtype=None, rmatmat=None, *, like=None,
    device=None)`` returns an operator applying the functions (``like``: the backend, as in
    :class:`specop.FunctionOperator`; ``dtype=None`` is the backend's default float, where scipy
    probes ``matvec`` with a zero vector). A subclass calls ``super().__init__(dtype, shape)``
    (optionally ``like=``, ``device=``) and implements scipy's hooks.
    """

    # what a scipy-style subclass that sets only ``self.dtype`` and ``self.shape`` in its own
    # ``__init__`` (without calling ``super().__init__``) is: a numpy operator, not known symmetric
    xp: Any = backends.namespace("numpy")
    device: Any = None
    is_symmetric: bool = False
    symmetry_known: bool = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is LinearOperator:
            return _from_functions(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, dtype: Any, shape: tuple[int, int], *, like: Any = None, device: Any = None) -> None:
        xp, dtype, device = resolve_like(like, dtype, device)
        super().__init__((int(shape[0]), int(shape[1])), dtype, xp=xp, device=device, symmetric=False,
                         symmetry_known=False)

    @classmethod
    def __subclasshook__(cls, C: type) -> Any:
        if cls is LinearOperator and issubclass(C, _Base):
            return True
        return NotImplemented

    def _rmatvec(self, v: Any) -> Any:
        if type(self)._adjoint is not LinearOperator._adjoint:
            return self._adjoint().matvec(v)
        return _Base._rmatmat(self, v[:, None])[:, 0]

    def _rmatmat(self, V: Any) -> Any:
        if type(self)._rmatvec is not LinearOperator._rmatvec:
            return backends.batched_apply(self._rmatvec, V, self.xp)
        if type(self)._adjoint is not LinearOperator._adjoint:
            return self._adjoint().matmat(V)
        return _Base._rmatmat(self, V)

    def _adjoint(self) -> _Base:
        return self.transpose()


def _from_functions(shape: tuple[int, int], matvec: Callable[[Any], Any], rmatvec: Callable[[Any], Any] | None = None,
                    matmat: Callable[[Any], Any] | None = None, dtype: Any = None,
                    rmatmat: Callable[[Any], Any] | None = None, *, like: Any = None,
                    device: Any = None) -> _Base:
    """scipy's ``LinearOperator(shape, matvec, ...)`` as a :class:`specop.FunctionOperator`."""
    if rmatvec is None and rmatmat is not None:
        def rmatvec(v: Any) -> Any:
            return rmatmat(v[:, None])[:, 0]
    return FunctionOperator(matvec, (int(shape[0]), int(shape[1])), dtype, like=like, rmatvec=rmatvec, matmat=matmat,
                            device=device)


def aslinearoperator(A: Any) -> _Base:
    """:func:`scipy.sparse.linalg.aslinearoperator`: any array, scipy matrix or operator as a specop operator.

    Integer matrices become float64 (scipy computes their products in float64); a complex
    ``A`` raises :class:`NotImplementedError` (planned).
    """
    return as_operator(A, "aslinearoperator")


def expm_multiply(A: Any, B: Any, start: float | None = None, stop: float | None = None, num: int | None = None,
                  endpoint: bool | None = None, traceA: float | None = None) -> Any:
    """:func:`scipy.sparse.linalg.expm_multiply`: ``exp(A) B``, or ``exp(t A) B`` on scipy's time grid.

    ``A`` must be symmetric (specop's Lanczos; a non-symmetric ``A`` raises ``ValueError``
    before any work); ``traceA`` is accepted and not needed. The result is an array of
    ``A``'s backend in the promoted dtype of ``A`` and ``B``.
    """
    if is_complex(B):
        raise not_yet("expm_multiply: B", "a complex B")
    op = as_claimed_symmetric(as_operator(A, "expm_multiply"))
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"expected A to be like a square matrix, got shape {op.shape}")
    ensure_symmetric(op, "expm_multiply", "auto")
    return _expm_multiply(op, B, start, stop, num, endpoint, traceA)


def onenormest(A: Any, t: int = 2, itmax: int = 5, compute_v: bool = False, compute_w: bool = False) -> Any:
    """:func:`scipy.sparse.linalg.onenormest`: ``est``, or ``(est, v)``, ``(est, w)``, ``(est, v, w)``.

    ``v`` and ``w`` are arrays of ``A``'s backend.
    """
    return _onenormest(as_operator(A, "onenormest"), t, itmax, compute_v, compute_w)
