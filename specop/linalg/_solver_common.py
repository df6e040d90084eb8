"""The block driver shared by :func:`~specop.linalg.cg` and :func:`~specop.linalg.minres`.

A solver is a *kernel*: ``start(X, R, tol)`` builds its state from iterates ``X`` and
residuals ``R`` (columns = right-hand sides) and ``step(state)`` advances every column
by one iteration, returning the state and a ``(2, k)`` report: a residual-norm estimate and
a status code per column (0 running, 1 converged by the estimate, 2 least-squares
stagnation, 3 invariant Krylov space, -1 negative curvature / indefinite preconditioner;
NaN for a non-finite value); it also clears ``state["active"]`` where the code is not 0
(:func:`finish_step`). A step may instead return ``(state, res, code)`` and leave the mask
to the driver (minres does).
Every update is masked by ``state["active"]``, so a column that finished stops changing
even while the others go on. The arithmetic of a step between its products is written as
:func:`specop.backends.kernel` functions (one compiled program per block shape on JAX, the
plain expressions elsewhere), and so are the small reductions here (:func:`colnorms`,
:func:`residual_norms`), so that JAX compiles a handful of programs per operator size and
none per iteration or restart. This module does everything else, once:

* host synchronisation: the codes are read every iteration on the host and every
  ``SYNC_EVERY`` iterations on accelerators; finished columns then leave the block
  (their products are no longer formed), so a block costs the same matvecs as
  column-by-column solves on the host;
* NaN/Inf from a matvec: :class:`~specop.NonFiniteError` naming the solver and iteration;
* the *true* residual ``b - A x`` of every finished column (one product per column),
  which is what ``residual_norms`` reports and what decides ``converged``. A column whose
  recursive residual met the tolerance but whose true residual does not is restarted
  from the true residual (residual replacement: van der Vorst & Ye, "Residual
  replacement strategies for Krylov subspace iterative methods for the convergence of
  true residuals", SIAM J. Sci. Comput. 22, 2000) while that still halves it; past
  that the attainable accuracy is reached and the column is reported unconverged;
* warnings (:class:`~specop.ConvergenceWarning`) with the numbers, and the result
  (both in ``specop.linalg._solver_result``; the kernels in ``specop.linalg._solver_kernels``,
  re-exported here).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop.linalg._solver_kernels import (
    apply,
    cdot,
    colnorms,
    finish_step,
    residual_norms,
    status,
    take_columns,
)
from specop.linalg._solver_result import Columns, SolveResult, result
from specop.operators.base import LinearOperator

__all__ = ["SolveResult", "SYNC_EVERY", "check_real", "check_maxiter", "as_block", "as_operator",
           "apply", "cdot", "colnorms", "drive", "finish_step", "residual_norms", "result_dtype", "solve_block",
           "status", "take_columns"]

_Columns = Columns  # the name lsmr imports

#: Iterations between host reads of the convergence codes on an accelerator.
SYNC_EVERY = 8


# ------------------------------------------------------------------ argument checks
def check_real(value: Any, name: str, low: float = 0.0) -> float:
    """``float(value)`` for a finite real ``>= low``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < low:
        raise ValueError(f"{name}: expected a finite number >= {low:g}, got {value!r}")
    return float(value)


def check_maxiter(maxiter: Any, default: int) -> int:
    """``maxiter`` as a positive int (``default`` for None)."""
    if maxiter is None:
        return default
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 1:
        raise ValueError(f"maxiter: expected a positive integer or None, got {maxiter!r}")
    return int(maxiter)


def result_dtype(A: LinearOperator, b: Any) -> Any:
    """dtype of the returned solution: ``A``'s and ``b``'s promoted (float32 with float64 gives float64)."""
    return A.xp.result_type(A.dtype, b.dtype)


def as_block(A: LinearOperator, b: Any, name: str, rows: int, rdt: Any) -> tuple[Any, bool]:
    """``b`` (``(rows,)`` or ``(rows, k)``) as a ``(rows, k)`` block in ``rdt``; whether it was a vector."""
    if not backends.is_array(b):
        raise TypeError(f"{name}: expected a {A.backend} array, got {type(b).__name__}")
    if b.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape ({rows},) or ({rows}, k), got {tuple(b.shape)}")
    B = A._check_input(b, b.ndim, rows, name)  # backend, device and shape, named
    if b.ndim == 2 and b.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one right-hand side, got shape {tuple(b.shape)}")
    B = backends.astype(B if b.ndim == 2 else B[:, None], rdt, A.xp)
    norms = backends.to_numpy(colnorms(A.xp, B))
    if not np.all(np.isfinite(norms)):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return B, b.ndim == 1


def as_operator(M: Any, A: LinearOperator, name: str) -> LinearOperator:
    """``M`` as a square operator matching ``A`` in size, backend and device."""
    from specop.operators.algebra import check_compatible
    from specop.operators.scipy_bridge import aslinearoperator

    try:
        op = aslinearoperator(M)
    except TypeError as exc:
        raise TypeError(f"{name}: expected an operator or a matrix, got {type(M).__name__}") from exc
    if op.shape != A.shape:
        raise ValueError(f"{name}: expected shape {A.shape} (that of A), got {op.shape}")
    check_compatible(A, op, name)
    return op


def _index(A: LinearOperator, idx: np.ndarray) -> Any:
    kw = {} if A.device is None else {"device": A.device}
    return A.xp.asarray(idx.astype(np.int64), **kw)


def solve_block(A: LinearOperator, Aeff: LinearOperator, b: Any, x0: Any, rtol: float, atol: float,
                maxiter: int, kernel: Any, what: str, callback: Any, rdt: Any) -> SolveResult:
    """The common start of cg and minres: ``b`` and ``x0`` as blocks, tolerances, then :func:`drive`.

    ``Aeff`` is the operator of the system (``A - shift I`` for minres), used for residuals.
    """
    xp = A.xp
    B, vector = as_block(A, b, "b", A.shape[0], rdt)
    matvecs = 0
    if x0 is None:
        X, R = xp.zeros_like(B), B
    else:
        if not backends.is_array(x0) or tuple(x0.shape) != tuple(b.shape):
            shape = tuple(x0.shape) if backends.is_array(x0) else type(x0).__name__
            raise ValueError(f"x0: expected shape {tuple(b.shape)} (that of b), got {shape}")
        X, _ = as_block(A, x0, "x0", A.shape[1], rdt)
        R = B - apply(Aeff, X, rdt)
        matvecs = B.shape[1]
    bnorm = backends.to_numpy(colnorms(xp, B)).astype(np.float64)
    tol = np.maximum(rtol * bnorm, atol)
    zero = (bnorm == 0) & (tol == 0)
    if x0 is not None and zero.any():  # b = 0 and atol = 0: x = 0 solves it (a tolerance 0 never would)
        keep = backends.from_numpy((~zero).astype(np.float64)[None, :], xp, A.device, B.dtype)
        X, R = X * keep, R * keep
    with backends.host_blas_single_thread(xp):
        return drive(Aeff, kernel, B, X, R, tol, maxiter, what, callback, vector, result_dtype(A, b), matvecs)


# ------------------------------------------------------------------ the driver
def drive(A: LinearOperator, kernel: Any, B: Any, X: Any, R: Any, tol: np.ndarray, maxiter: int,
          what: str, callback: Any, vector: bool, out_dtype: Any, matvecs: int) -> SolveResult:
    """Run ``kernel`` on the columns of ``B`` from iterates ``X`` with residuals ``R`` (see the module docstring)."""
    xp, rdt = A.xp, B.dtype
    k = B.shape[1]
    sync_every = 1 if backends.is_host(xp, A.device) else SYNC_EVERY
    res0 = backends.to_numpy(colnorms(xp, R)).astype(np.float64)
    if not np.all(np.isfinite(res0)):
        raise NonFiniteError(f"{what}: the product A @ x0 returned NaN or Inf (iteration 0)")
    cols = Columns(k, res0)
    todo = np.flatnonzero(~(res0 <= tol))
    for j in np.flatnonzero(res0 <= tol):
        cols.x[j], cols.codes[j] = X[:, int(j)], 1
    if 0 < todo.size < k:
        XR = take_columns(xp, {"X": X, "R": R}, _index(A, todo))
        X, R = XR["X"], XR["R"]
    while todo.size:  # X, R: the iterates and true residuals of the columns ``todo``
        matvecs += _round(A, kernel, X, R, todo, tol, maxiter, cols, sync_every, what, callback, k)
        finished = todo
        Xf = cols.x[int(finished[0])][:, None] if finished.size == 1 else \
            xp.stack([cols.x[j] for j in finished], axis=1)
        Rf, true_d = residual_norms(xp, B, _index(A, finished), apply(A, Xf, rdt))
        matvecs += finished.size
        true = backends.to_numpy(true_d).astype(np.float64)
        if not np.all(np.isfinite(true)):
            raise NonFiniteError(f"{what}: the true-residual product A @ x returned NaN or Inf")
        again = []
        for i, j in enumerate(finished):
            refine = (cols.codes[j] > 0 and not true[i] <= tol[j] and true[i] <= 0.5 * cols.true[j]
                      and cols.iters[j] < maxiter)
            cols.true[j] = true[i]
            cols.history[j][-1] = float(true[i]) if refine else cols.history[j][-1]
            if refine:
                again.append(i)
        if again:
            XR = take_columns(xp, {"X": Xf, "R": Rf}, _index(A, np.asarray(again)))
            X, R = XR["X"], XR["R"]
        todo = finished[np.asarray(again, dtype=np.int64)]
    return result(A, B, cols, tol, maxiter, what, vector, out_dtype, matvecs)


def _round(A: LinearOperator, kernel: Any, X: Any, R: Any, cols_idx: np.ndarray, tol: np.ndarray,
           maxiter: int, cols: Columns, sync_every: int, what: str, callback: Any, k: int) -> int:
    """One restart of the kernel on the columns ``cols_idx``; returns the matvecs it spent."""
    xp = A.xp
    tol_dev = backends.from_numpy(tol[cols_idx], xp, A.device, X.dtype)
    s = kernel.start(X, R, tol_dev)
    kw = {} if A.device is None else {"device": A.device}
    s["active"] = xp.ones((cols_idx.size,), dtype=xp.bool, **kw)
    s["masked"] = sync_every > 1  # on the host finished columns leave at once: no masking needed
    live = cols_idx.copy()  # global indices of the state's columns
    matvecs = 0
    while live.size:
        chunk = 1 if sync_every == 1 else int(min(sync_every, int(np.min(maxiter - cols.iters[live]))))
        reports = []
        for _ in range(chunk):
            out = kernel.step(s)
            if len(out) == 3:  # the older protocol ``(state, res, code)``: the driver clears the mask
                s, res, code = out
                s["active"] = s["active"] & (code == 0)
                report = xp.stack([res, code])
            else:
                s, report = out
            reports.append(report)
            if callback is not None:
                callback(_assemble(xp, s["X"], live, cols, k))
        matvecs += kernel.products * live.size * chunk
        log = backends.to_numpy(reports[0])[None] if chunk == 1 else backends.to_numpy(xp.stack(reports))
        if chunk == 1 and live.size == 1:  # the common host step of one column, in host scalars
            g, res1, code1 = int(live[0]), float(log[0, 0, 0]), float(log[0, 1, 0])
            if code1 == 0 and math.isfinite(res1) and cols.iters[g] + 1 < maxiter:
                cols.history[g].append(res1)
                cols.iters[g] += 1
                continue
        res_h, code_h = log[:, 0, :].astype(np.float64), log[:, 1, :].astype(np.float64)
        if chunk == 1 and not code_h.any() and np.isfinite(res_h).all() and np.all(cols.iters[live] + 1 < maxiter):
            for c, j in enumerate(live):  # the common host step: every column goes on
                cols.history[j].append(float(res_h[0, c]))
            cols.iters[live] += 1
            continue
        done = np.zeros(live.size, dtype=bool)
        for c, j in enumerate(live):
            stop = np.flatnonzero(code_h[:, c] != 0)  # NaN != 0 too
            last = int(stop[0]) if stop.size else chunk - 1
            if not (np.all(np.isfinite(res_h[: last + 1, c])) and np.isfinite(code_h[last, c])):
                bad = int(np.flatnonzero(~(np.isfinite(res_h[:, c]) & np.isfinite(code_h[:, c])))[0])
                raise NonFiniteError(f"{what}: the matvec at iteration {cols.iters[j] + bad + 1} returned NaN or Inf"
                                     + (f" (right-hand side {j})" if k > 1 else ""))
            cols.history[j] += res_h[: last + 1, c].tolist()
            cols.iters[j] += last + 1
            if stop.size or cols.iters[j] >= maxiter:
                done[c] = True
                cols.codes[j] = int(code_h[last, c]) if stop.size else 0
        if done.any():
            for c in (int(i) for i in np.flatnonzero(done)):
                g = int(live[c])
                cols.x[g] = s["X"][:, c]
                if cols.codes[g] == -1 and hasattr(kernel, "direction"):
                    cols.direction[g] = kernel.direction(s)[:, c]
                if hasattr(kernel, "finals"):  # per-column scalars a solver reports (lsmr's norm estimates)
                    cols.finals[g] = {name: v[c] for name, v in kernel.finals(s).items()}
            live = live[~done]
            if live.size:  # the state of the columns still running (one program for all its arrays)
                keep = _index(A, np.flatnonzero(~done))
                cols_s = {name: v for name, v in s.items() if _is_columns(v, done.size)}
                s.update(take_columns(xp, cols_s, keep))
    return matvecs


def _is_columns(v: Any, k: int) -> bool:
    return backends.is_array(v) and v.ndim >= 1 and v.shape[-1] == k


def _assemble(xp: Any, X: Any, live: np.ndarray, cols: Columns, k: int) -> Any:
    """The current iterate of every column (for ``callback``)."""
    pos = {int(j): c for c, j in enumerate(live)}
    parts = [X[:, pos[j]] if j in pos else cols.x[j] for j in range(k)]
    return xp.stack(parts, axis=1)
