"""Preconditioned conjugate gradients for symmetric positive definite operators.

Hestenes & Stiefel, "Methods of conjugate gradients for solving linear systems",
J. Res. Nat. Bur. Standards 49, 1952 (Algorithm (3:1a-f)); preconditioned form as in
Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., Algorithm 9.1. With
``M ~ A^{-1}`` symmetric positive definite, from ``r_0 = b - A x_0``, ``z_0 = M r_0``,
``p_0 = z_0``::

    alpha_j = (r_j . z_j) / (p_j . A p_j)
    x_{j+1} = x_j + alpha_j p_j,   r_{j+1} = r_j - alpha_j A p_j,   z_{j+1} = M r_{j+1}
    beta_j  = (r_{j+1} . z_{j+1}) / (r_j . z_j),   p_{j+1} = z_{j+1} + beta_j p_j

A column stops when ``||r_j|| <= max(rtol ||b||, atol)`` (scipy's test) or when it meets
negative curvature ``p_j . A p_j <= 0``: then ``A`` is not positive definite (Steihaug,
"The conjugate gradient method and trust regions in large scale optimization", SIAM J.
Numer. Anal. 20, 1983, uses the same test), the iterate before that step is returned with
``info = -1``, a warning, and ``p_j`` in ``result.negative_curvature``. Columns of a block
``b`` run independent recurrences through one ``matmat`` per iteration; the stopping,
true-residual check and restarts are those of ``specop.linalg._solver_common``. Vectors
and scalars are float64 (where the backend has it) whatever the operator's dtype: ``A`` and
``M`` are seen in the recurrence dtype (the Krylov core's ``RecurrenceView``, ``lean``: without
the per-product input checks), as in minres and lanczos, so only their products run in the
operator's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import prepare, recurrence_dtype
from specop.linalg._krylov import RecurrenceView
from specop.linalg._solver_common import (
    SolveResult,
    as_operator,
    cdot,
    check_maxiter,
    check_real,
    finish_step,
    solve_block,
    status,
)

__all__ = ["cg"]


@backends.kernel
def _update(xp: Any, X: Any, R: Any, P: Any, AP: Any, rho: Any, active: Any) -> tuple[Any, ...]:
    """The step along ``P``: ``x += alpha p``, ``r -= alpha A p`` (masked); also ``p^T A p`` and the mask."""
    pap = cdot(xp, P, AP)
    ok = active & (pap > 0) & (rho > 0)
    alpha = xp.where(ok, rho / xp.where(ok, pap, 1.0), 0.0)
    return X + alpha * P, R - alpha * AP, pap, ok


@backends.kernel
def _direction(xp: Any, R: Any, Z: Any, P: Any, rho: Any, pap: Any, ok: Any, active: Any,
               tol: Any) -> tuple[Any, ...]:
    """The next direction ``p = z + beta p`` from ``z = M r``, the residual norm and the status codes."""
    rho_new = cdot(xp, R, Z)
    beta = xp.where(ok, rho_new / xp.where(ok, rho, 1.0), 0.0)
    P = xp.where(ok, Z + beta * P, P)
    res = xp.sqrt(rho_new if Z is R else cdot(xp, R, R))  # without M, r . z is r . r: one reduction less
    conv = ok & (res <= tol)
    broken = active & ((pap <= 0) | (ok & ~conv & (rho_new <= 0)))  # negative curvature, or M not SPD
    code = status(xp, res, (broken, -1.0), (conv, 1.0))
    active, report = finish_step(xp, res, code, active, xp.isfinite(pap) & xp.isfinite(res))
    return P, xp.where(ok, rho_new, rho), active, report


@backends.kernel
def _step(xp: Any, X: Any, R: Any, P: Any, AP: Any, rho: Any, active: Any, tol: Any) -> tuple[Any, ...]:
    """A whole step without preconditioner (``z = r``): one program between two products."""
    X, R, pap, ok = _update(xp, X, R, P, AP, rho, active)
    return (X, R, *_direction(xp, R, R, P, rho, pap, ok, active, tol))


class _CG:
    """One CG iteration on every column of the block (masked by ``state["active"]``).

    One column on the host (no compiling backend) takes the *vector path*: the scalars are host
    floats and ``x``, ``r``, ``p`` are updated in place (:func:`specop.backends.axpy`, ``xpay``),
    the arithmetic of scipy's loop; a step that meets ``p^T A p <= 0``, ``r^T z <= 0`` or a
    non-finite value goes through the masked kernels instead, which set the status codes.
    """

    products = 1

    def __init__(self, A: Any, M: Any, rdt: Any) -> None:
        self.xp = A.xp
        self.A = RecurrenceView(A, rdt, lean=True)
        self.M = None if M is None else RecurrenceView(M, rdt, lean=True)
        self.vector = backends.is_host(A.xp, A.device) and not backends.compiles_per_shape(A.xp)

    def start(self, X: Any, R: Any, tol: Any) -> dict[str, Any]:
        Z = R if self.M is None else self.M @ R
        s = {"X": X, "R": R, "P": Z, "rho": cdot(self.xp, R, Z), "tol": tol}
        if self.vector and X.shape[1] == 1:  # own copies: the vector path updates them in place
            xp = self.xp
            s.update(X=xp.asarray(X, copy=True), R=xp.asarray(R, copy=True), P=xp.asarray(Z, copy=True),
                     work=backends.workspace(X), rho_h=float(backends.vdot(R[:, 0], Z[:, 0])),
                     tol_h=float(backends.to_numpy(tol)[0]))
        return s

    def step(self, s: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        xp = self.xp
        AP = self.A @ s["P"]
        if "work" in s:
            report = self._vector_step(s, AP)
            if report is not None:
                return s, report
            s["rho"] = backends.from_numpy(np.array([s.pop("rho_h")]), xp, self.A.A.device, AP.dtype)
            del s["work"]  # the masked kernels from here on (this column's last step)
        if self.M is None:
            out = _step(xp, s["X"], s["R"], s["P"], AP, s["rho"], s["active"], s["tol"])
        else:
            X, R, pap, ok = _update(xp, s["X"], s["R"], s["P"], AP, s["rho"], s["active"])
            Z = self.M @ R
            out = (X, R, *_direction(xp, R, Z, s["P"], s["rho"], pap, ok, s["active"], s["tol"]))
        s["X"], s["R"], s["P"], s["rho"], s["active"], report = out
        return s, report

    def _vector_step(self, s: dict[str, Any], AP: Any) -> np.ndarray | None:
        """The step of :func:`_step` / :func:`_direction` for one column with host scalars; its
        ``(2, 1)`` report, or None (nothing changed) for a step the masked kernels must take."""
        P, work, rho = s["P"], s["work"], s["rho_h"]
        pap = float(backends.vdot(P[:, 0], AP[:, 0]))
        if not (pap > 0 and rho > 0 and math.isfinite(pap)):
            return None
        alpha = rho / pap
        s["X"] = backends.axpy(s["X"], alpha, P, work)
        R = s["R"] = backends.axpy(s["R"], -alpha, AP, work)
        Z = R if self.M is None else self.M @ R
        rho_new = float(backends.vdot(R[:, 0], Z[:, 0]))
        res = math.sqrt(rho_new) if Z is R else math.sqrt(float(backends.vdot(R[:, 0], R[:, 0])))
        conv = res <= s["tol_h"]
        s["P"] = backends.xpay(P, rho_new / rho, Z)
        s["rho_h"] = rho_new
        # the codes of _direction: -1 where M is not SPD (r^T z <= 0), 1 converged, NaN not finite
        code = math.nan if not math.isfinite(res) else -1.0 if not conv and rho_new <= 0 else float(conv)
        return np.array([[res], [code]])

    def direction(self, s: dict[str, Any]) -> Any:
        return s["P"]


def cg(A: Any, b: Any, *, x0: Any = None, rtol: float = 1e-5, atol: float = 0.0, maxiter: int | None = None,
       M: Any = None, callback: Callable[[Any], None] | None = None) -> SolveResult:
    """Solve ``A x = b`` for a symmetric positive definite ``A`` by (preconditioned) conjugate gradients.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric positive definite operator (anything :func:`specop.aslinearoperator` takes).
    b : array, shape (n,) or (n, k)
        Right-hand side(s) on the operator's backend and device; the ``k`` columns of a block
        run independent recurrences through one ``matmat`` per iteration.
    x0 : array, optional
        Starting guess shaped like ``b`` (default zero; a given ``x0`` costs one product).
    rtol, atol : float
        A column has converged when ``||b - A x|| <= max(rtol ||b||, atol)`` (scipy's test).
    maxiter : int, optional
        Iterations per column (default ``10 n``, scipy's).
    M : LinearOperator or array-like, optional
        Symmetric positive definite preconditioner approximating ``A^{-1}`` (scipy's meaning);
        e.g. :func:`specop.spectral_preconditioner`.
    callback : callable, optional
        Called as ``callback(xk)`` after every iteration with the current iterate (shape
        ``(n, 1)`` or ``(n, k)``; on accelerators it costs one stack of the columns).

    Returns
    -------
    SolveResult
        Unpacks as ``x, info``. ``residual_norms`` are true residuals of the returned ``x``.
        A column that meets ``p^T A p <= 0`` stops with ``info = -1``, a
        :class:`~specop.ConvergenceWarning` and ``p`` in ``negative_curvature``; a column
        that misses the tolerance warns likewise and reports ``converged=False``.

    Raises
    ------
    NonFiniteError
        When a product returns NaN or Inf (the iteration is named).
    ValueError, TypeError
        For bad arguments (each names the argument).
    """
    A, n = prepare(A, "cg")
    rtol, atol = check_real(rtol, "rtol"), check_real(atol, "atol")
    maxiter = check_maxiter(maxiter, 10 * n)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    Mop = None if M is None else as_operator(M, A, "M")
    rdt = recurrence_dtype(A, "float64")
    return solve_block(A, A, b, x0, rtol, atol, maxiter, _CG(A, Mop, rdt), "cg", callback, rdt)

