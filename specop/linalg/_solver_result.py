"""Results of :func:`~specop.linalg.cg`, :func:`~specop.linalg.minres` and :func:`~specop.linalg.lsmr`.

:class:`SolveResult`, the host bookkeeping of the block driver in
``specop.linalg._solver_common`` (:class:`Columns`) and the assembly of the result from it,
with the warnings (:class:`~specop.ConvergenceWarning`) that give the numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._solver_kernels import colnorms
from specop.operators.base import LinearOperator

__all__ = ["Columns", "SolveResult", "result"]

@dataclass(frozen=True)
class SolveResult:
    """Outcome of :func:`~specop.linalg.cg`, :func:`~specop.linalg.minres` or :func:`~specop.linalg.lsmr`.

    Unpacks as scipy's ``x, info = cg(A, b)``.

    Attributes
    ----------
    x : array
        The solution, shaped like ``b`` (``(n,)`` or ``(n, k)``), on the operator's backend
        and device, in the promoted dtype of ``A`` and ``b``.
    info : int
        scipy's convention: 0 every column converged; ``> 0`` not converged (the iteration
        count); ``< 0`` breakdown (negative curvature in cg, indefinite preconditioner).
    residual_norms : numpy.ndarray
        The *true* final residual norms ``||b - A x||`` (lsmr: of the damped system),
        computed from the returned ``x``; shape ``()`` for a vector ``b``, ``(k,)`` for a block.
    iterations : int
        Iterations of the column that needed most.
    matvecs : int
        Products with ``A`` (single columns; lsmr counts ``A`` and ``A^T``), the final
        true-residual products included.
    converged : bool
        Whether every column met the tolerance (by its true residual).
    residual_history : numpy.ndarray
        Residual norm per iteration (the solver's recursive estimate, the quantity its
        stopping test saw; a true residual where a column was restarted), shape
        ``(iterations + 1,)`` or ``(iterations + 1, k)``; a column that finished early
        repeats its last value.
    column_info : numpy.ndarray
        ``info`` of each column (shape ``()`` or ``(k,)``).
    column_iterations : numpy.ndarray
        Iterations of each column.
    negative_curvature : array or None
        cg only: for columns that met ``p^T A p <= 0``, the direction ``p`` (zero
        columns elsewhere), shaped like ``x``; None when no column did.
    method : str
        The solver.
    """

    x: Any = field(repr=False)
    info: int
    residual_norms: np.ndarray
    iterations: int
    matvecs: int
    converged: bool
    residual_history: np.ndarray = field(repr=False)
    column_info: np.ndarray = field(repr=False)
    column_iterations: np.ndarray = field(repr=False)
    negative_curvature: Any = field(default=None, repr=False)
    method: str = ""

    def __iter__(self):
        yield self.x
        yield self.info




class Columns:
    """Host bookkeeping of every right-hand side: history, iterations, codes, final iterates."""

    def __init__(self, k: int, res0: np.ndarray) -> None:
        self.history: list[list[float]] = [[float(r)] for r in res0]
        self.iters = np.zeros(k, dtype=np.int64)
        self.codes = np.zeros(k, dtype=np.int64)
        self.x: list[Any] = [None] * k
        self.direction: list[Any] = [None] * k
        self.finals: list[dict[str, Any]] = [{} for _ in range(k)]
        self.true = res0.astype(np.float64).copy()



def result(A: LinearOperator, B: Any, cols: Columns, tol: np.ndarray, maxiter: int, what: str,
            vector: bool, out_dtype: Any, matvecs: int) -> SolveResult:
    xp = A.xp
    conv = cols.true <= tol
    info_c = np.where(conv, 0, np.where(cols.codes < 0, -1, np.maximum(cols.iters, 1)))
    bnorm = backends.to_numpy(colnorms(xp, B)).astype(np.float64)
    rel = cols.true / np.where(bnorm > 0, bnorm, 1.0)
    neg = np.flatnonzero(cols.codes == -1)
    curvature = None
    if any(cols.direction[j] is not None for j in range(len(cols.x))):
        zero = xp.zeros_like(cols.x[0])
        curvature = xp.stack([d if d is not None else zero for d in cols.direction], axis=1)
        curvature = backends.astype(curvature, out_dtype, xp)
        curvature = curvature[:, 0] if vector else curvature
    if neg.size:
        which = "" if vector else f" (right-hand sides {neg.tolist()})"
        warnings.warn(f"{what}: stopped at iteration(s) {cols.iters[neg].tolist()}{which}: "
                      f"{_breakdown_text(what)}; relative residual(s) {_fmt(rel[neg])}",
                      ConvergenceWarning, stacklevel=3)
    bad = np.flatnonzero(~conv & (cols.codes >= 0))
    if bad.size:
        which = "" if vector else f"{bad.size} of {len(cols.x)} right-hand sides: "
        why = [_reason(int(cols.codes[j]), int(cols.iters[j]), maxiter) for j in bad]
        warnings.warn(f"{what}: {which}not converged: relative residual(s) {_fmt(rel[bad])} > tolerance(s) "
                      f"{_fmt(tol[bad] / np.where(bnorm[bad] > 0, bnorm[bad], 1.0))} ({'; '.join(sorted(set(why)))})",
                      ConvergenceWarning, stacklevel=3)
    length = max(len(h) for h in cols.history)
    hist = np.array([h + [h[-1]] * (length - len(h)) for h in cols.history]).T
    x = backends.astype(cols.x[0][:, None] if len(cols.x) == 1 else xp.stack(cols.x, axis=1), out_dtype, xp)
    info = 0 if conv.all() else (-1 if neg.size else int(cols.iters.max()))
    squeeze = (lambda a: a[..., 0]) if vector else (lambda a: a)
    return SolveResult(x=x[:, 0] if vector else x, info=info, residual_norms=squeeze(cols.true),
                       iterations=int(cols.iters.max()), matvecs=int(matvecs), converged=bool(conv.all()),
                       residual_history=squeeze(hist), column_info=squeeze(info_c),
                       column_iterations=squeeze(cols.iters.copy()), negative_curvature=curvature,
                       method=what)


def _breakdown_text(what: str) -> str:
    if what == "cg":
        return ("negative curvature p^T A p <= 0 (A is not positive definite, or the preconditioner "
                "is not): the iterate before that step is returned and the direction p is in "
                "result.negative_curvature; use minres for a symmetric indefinite A")
    return "the preconditioner M is not positive definite (r^T M r < 0)"


def _reason(code: int, iters: int, maxiter: int) -> str:
    if iters >= maxiter and code in (0, 1):
        return f"iteration limit maxiter = {maxiter} reached"
    if code == 2:
        return "the residual stagnated at a least-squares solution: b is not in the range of the operator"
    if code == 3:
        return "the Krylov space became invariant: b is not in the range of the operator"
    if code == 1:
        return "the true residual stagnated above the tolerance: the attainable accuracy of the operator's dtype"
    return f"iteration limit maxiter = {maxiter} reached"


def _fmt(a: np.ndarray) -> str:
    return ", ".join(f"{v:.2e}" for v in np.asarray(a).ravel()[:6]) + (" ..." if np.asarray(a).size > 6 else "")
