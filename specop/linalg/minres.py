"""MINRES for symmetric (indefinite) systems ``(A - shift I) x = b``.

Paige & Saunders, "Solution of sparse indefinite systems of linear equations", SIAM J.
Numer. Anal. 12, 1975: the Lanczos process on ``A - shift I`` (preconditioned by an SPD
``M ~ (A - shift I)^{-1}``) builds the tridiagonal ``T_k``; a QR factorization of the
extended ``T_k`` by Givens rotations, updated one rotation per step, gives the iterate
``x_k`` of minimal residual over the Krylov space through the short recurrence
``w_k = (v_k - eps_k w_{k-2} - delta_k w_{k-1}) / gamma_k``, ``x_k = x_{k-1} + phi_k w_k``,
and the residual norm ``|phibar_{k+1}|`` for free (the recurrence as in the authors'
reference implementation, also scipy's). With a preconditioner ``phibar`` is the
``M``-norm of the residual, so the 2-norm residual is carried by the recurrence
``r_k = r_{k-1} - phi_k (A - shift I) w_k`` (three more vectors).

A column stops when ``||r_k|| <= max(rtol ||b||, atol)`` (the test of :func:`cg`, not
scipy's backward-error test ``||r|| <= rtol ||A|| ||x||``, which stops earlier), when the
Lanczos process breaks down (``beta_{k+1} <= eps ||T_k||_F``: the Krylov space is invariant and
``x_k`` is final; a small but larger ``beta`` is no breakdown for MINRES, and stopping there
would lose what the next steps still gain on ill-conditioned systems), or when the
residual cannot decrease further: ``||(A - shift I) r_k|| <= sqrt(eps) ||T_k||_F ||r_k||``
(scipy's least-squares test with ``sqrt(eps)`` for its ``rtol``, which stops ill-conditioned
consistent systems far too early, when ``r`` lies along small eigenvalues; near ``cond = 1e8``
it may still fire on a plateau, which costs a restart), or ``gamma_k <=
100 eps ||T_k||_F`` (the extended ``T_k`` is singular: an inconsistent singular system at the
end of its Krylov space, where the update would divide by ``gamma_k``; ``x`` is kept). These
end the column's round; if its true residual then misses the tolerance but has at least
halved, it restarts from it, otherwise it is reported unconverged, as a least-squares solution
of an inconsistent singular system.
Columns of a block run through one ``matmat`` per iteration; true residuals, restarts and
warnings are those of ``specop.linalg._solver_common``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import prepare, recurrence_dtype
from specop.linalg._krylov import RecurrenceView, three_term_unnormalized
from specop.linalg._solver_common import (
    SolveResult,
    as_operator,
    cdot,
    check_maxiter,
    check_real,
    solve_block,
    status,
)

__all__ = ["minres"]

_SCALARS = ("beta", "oldb", "dbar", "epsln", "phibar", "cs", "sn", "tnorm2")


class _Minres:
    """One MINRES iteration on every column of the block (masked by ``state["active"]``)."""

    products = 1

    def __init__(self, A: Any, shift: float, M: Any, rdt: Any) -> None:
        self.shift, self.xp = shift, A.xp
        self.A = RecurrenceView(A, rdt, lean=True)
        self.M = None if M is None else RecurrenceView(M, rdt, lean=True)
        self.eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
        self.lstol = float(np.sqrt(self.eps))
        self.vector = backends.is_host(A.xp, A.device) and not backends.compiles_per_shape(A.xp)

    def _op(self, V: Any) -> Any:
        AV = self.A @ V
        return AV - self.shift * V if self.shift else AV

    def _precond(self, R: Any) -> Any:
        return R if self.M is None else self.M @ R

    def start(self, X: Any, R: Any, tol: Any) -> dict[str, Any]:
        xp = self.xp
        Y = self._precond(R)
        b2 = cdot(xp, R, Y)
        beta1 = xp.sqrt(xp.where(b2 > 0, b2, 0.0))
        zeros = xp.zeros_like(beta1)
        s = {"X": X, "R1": R, "R2": R, "Y": Y, "W": xp.zeros_like(X), "W2": xp.zeros_like(X), "tol": tol,
             "beta": beta1, "oldb": zeros, "dbar": zeros, "epsln": zeros, "phibar": beta1,
             "cs": zeros - 1.0, "sn": zeros, "tnorm2": zeros, "first": True, "mbad": b2 < 0}
        if self.M is not None:
            s.update(RT=R, AW=xp.zeros_like(X), AW2=xp.zeros_like(X))
        if self.vector and X.shape[1] == 1:  # the vector path: host scalars, x updated in place
            s["X"] = xp.asarray(X, copy=True)
            if self.M is not None:
                s["RT"] = xp.asarray(R, copy=True)
            s["work"] = backends.workspace(X)
            s["host"] = {name: float(backends.to_numpy(s[name])[0]) for name in _SCALARS}
            b2 = float(backends.vdot(R[:, 0], Y[:, 0]))  # the dot product of the steps (scipy's)
            s["host"]["beta"] = s["host"]["phibar"] = math.sqrt(b2) if b2 > 0 else 0.0
            s["host"].update(tol=float(backends.to_numpy(tol)[0]), mbad=bool(backends.to_numpy(s["mbad"])[0]))
        return s

    def step(self, s: dict[str, Any]) -> tuple[dict[str, Any], Any] | tuple[dict[str, Any], Any, Any]:
        xp = self.xp
        if "work" in s:
            if s["host"]["beta"] > 0 and not s["host"]["mbad"]:
                return s, self._vector_step(s)
            for name in _SCALARS:  # beta = 0 or M not SPD: the masked step reports it
                s[name] = backends.from_numpy(np.array([s["host"][name]]), xp, self.A.A.device, s["X"].dtype)
            del s["work"], s["host"]
        act = s["active"]
        beta, oldb = s["beta"], s["oldb"]
        live = act & (beta > 0)
        V = xp.where(live, 1.0 / xp.where(live, beta, 1.0), 0.0) * s["Y"]
        AV = self._op(V)
        # the Lanczos step on A - shift I, preconditioned (Paige & Saunders 1975)
        c_prev = xp.where(live, beta / xp.where(oldb > 0, oldb, 1.0), 0.0)
        Y, alfa = three_term_unnormalized(xp, AV, V, None if s["first"] else s["R1"], c_prev, s["R2"], beta, live)
        R1, R2 = s["R2"], Y
        Yp = self._precond(R2)
        b2 = cdot(xp, R2, Yp)
        beta_n = xp.sqrt(xp.where(b2 > 0, b2, 0.0))
        # ||T_k||_F^2 (scipy's also adds beta_1 = ||b|| at the first step, which mixes the scale of b in)
        tnorm2 = s["tnorm2"] + alfa * alfa + beta_n * beta_n + (0.0 if s["first"] else beta * beta)
        cs, sn, dbar = s["cs"], s["sn"], s["dbar"]
        oldeps = s["epsln"]
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta_n
        dbar_n = -cs * beta_n
        root = xp.sqrt(gbar * gbar + dbar_n * dbar_n)
        arnorm = s["phibar"] * root
        gamma = xp.sqrt(gbar * gbar + beta_n * beta_n)
        anorm = xp.sqrt(tnorm2)
        # gamma at rounding level: the extended T_k is singular (an inconsistent singular system at the
        # exhaustion of its Krylov space); the update would divide by it, so x stays and the column stops
        singular = live & (gamma <= 100 * self.eps * anorm)
        gamma = xp.where(gamma > 0, gamma, self.eps)
        cs_n, sn_n = gbar / gamma, beta_n / gamma
        phi = xp.where(live & ~singular, cs_n * s["phibar"], 0.0)
        phibar = sn_n * s["phibar"]
        W = (V - oldeps * s["W2"] - delta * s["W"]) / gamma
        keep = s["masked"]

        def upd(new: Any, old: Any) -> Any:
            return xp.where(live, new, old) if keep else new

        s["X"] = s["X"] + phi * W
        s["W2"], s["W"] = upd(s["W"], s["W2"]), upd(W, s["W"])
        s["R1"], s["R2"], s["Y"] = upd(R1, s["R1"]), upd(R2, s["R2"]), upd(Yp, s["Y"])
        if self.M is not None:
            AW = (AV - oldeps * s["AW2"] - delta * s["AW"]) / gamma
            s["RT"] = s["RT"] - phi * AW
            s["AW2"], s["AW"] = upd(s["AW"], s["AW2"]), upd(AW, s["AW"])
            res = xp.sqrt(cdot(xp, s["RT"], s["RT"]))
        else:
            res = xp.abs(phibar)
        for name, new in zip(_SCALARS, (beta_n, beta, dbar_n, epsln, phibar, cs_n, sn_n, tnorm2), strict=True):
            s[name] = upd(new, s[name])  # unmasked on the host: a column that is not live leaves now
        s["first"] = False
        conv = live & ~singular & (res <= s["tol"])
        invariant = live & ~conv & (beta_n <= self.eps * anorm)
        lsq = live & ~conv & ~invariant & (singular | (arnorm <= self.lstol * anorm * res))
        mbad = act & (s["mbad"] | (b2 < 0) | ~(beta > 0))  # M not SPD (or singular)
        code = status(xp, res, (mbad, -1.0), (conv, 1.0), (invariant, 3.0), (lsq, 2.0))
        finite = xp.isfinite(alfa) & xp.isfinite(b2) & xp.isfinite(res)
        return s, res, xp.where(act & ~finite, xp.nan, code)

    def _vector_step(self, s: dict[str, Any]) -> np.ndarray:
        """:meth:`step` for one live column with host scalars and in-place vector updates; its report."""
        h, work, first, B = s["host"], s["work"], s["first"], backends
        beta, oldb, cs, sn, dbar, phibar = h["beta"], h["oldb"], h["cs"], h["sn"], h["dbar"], h["phibar"]
        V = s["Y"] * (1.0 / beta)
        AV = self.A @ V
        if self.shift:
            AV = B.axpy(AV, -self.shift, V, work)
        w = AV if self.M is None else self.xp.asarray(AV, copy=True)  # (M: AV is needed below)
        if not first:
            w = B.axpy(w, -(beta / oldb if oldb > 0 else 0.0), s["R1"], work)
        alfa = float(B.vdot(V[:, 0], w[:, 0]))
        R2 = B.axpy(w, -alfa / beta, s["R2"], work)
        Yp = self._precond(R2)
        b2 = float(B.vdot(R2[:, 0], Yp[:, 0]))
        beta_n = math.sqrt(b2) if b2 > 0 else 0.0
        tnorm2 = h["tnorm2"] + alfa * alfa + beta_n * beta_n + (0.0 if first else beta * beta)
        oldeps = h["epsln"]
        delta, gbar = cs * dbar + sn * alfa, sn * dbar - cs * alfa
        epsln, dbar_n = sn * beta_n, -cs * beta_n
        arnorm = phibar * math.sqrt(gbar * gbar + dbar_n * dbar_n)
        gamma, anorm = math.sqrt(gbar * gbar + beta_n * beta_n), math.sqrt(tnorm2)
        singular = gamma <= 100 * self.eps * anorm
        gamma = gamma if gamma > 0 else self.eps
        cs_n, sn_n = gbar / gamma, beta_n / gamma
        phi = 0.0 if singular else cs_n * phibar
        phibar_n = sn_n * phibar

        def direction(W2: Any, W: Any, U: Any) -> Any:  # (U - oldeps W2 - delta W) / gamma, in W2's storage
            return B.scale(B.axpy(B.xpay(W2, -oldeps, U), -delta, W, work), gamma)

        W = direction(s["W2"], s["W"], V)
        s["X"] = B.axpy(s["X"], phi, W, work)
        s["W2"], s["W"] = s["W"], W
        s["R1"], s["R2"], s["Y"] = s["R2"], R2, Yp
        if self.M is not None:
            AW = direction(s["AW2"], s["AW"], AV)
            s["RT"] = B.axpy(s["RT"], -phi, AW, work)
            s["AW2"], s["AW"] = s["AW"], AW
            res = math.sqrt(float(B.vdot(s["RT"][:, 0], s["RT"][:, 0])))
        else:
            res = abs(phibar_n)
        h.update(beta=beta_n, oldb=beta, dbar=dbar_n, epsln=epsln, phibar=phibar_n, cs=cs_n, sn=sn_n, tnorm2=tnorm2)
        s["first"] = False
        # the codes of step(): M not SPD, converged, invariant, least-squares stagnation
        conv = not singular and res <= h["tol"]
        invariant = not conv and beta_n <= self.eps * anorm
        lsq = not conv and not invariant and (singular or arnorm <= self.lstol * anorm * res)
        code = -1.0 if b2 < 0 else 1.0 if conv else 3.0 if invariant else 2.0 if lsq else 0.0
        if not (math.isfinite(alfa) and math.isfinite(b2) and math.isfinite(res)):
            code = math.nan
        return np.array([[res], [code]])


def minres(A: Any, b: Any, *, x0: Any = None, shift: float = 0.0, rtol: float = 1e-5, atol: float = 0.0,
           maxiter: int | None = None, M: Any = None, callback: Callable[[Any], None] | None = None) -> SolveResult:
    """Solve ``(A - shift I) x = b`` for a symmetric, possibly indefinite ``A`` by MINRES.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator (the Hessian case: indefinite is fine).
    b : array, shape (n,) or (n, k)
        Right-hand side(s); the columns of a block run independent recurrences through
        one ``matmat`` per iteration.
    x0 : array, optional
        Starting guess shaped like ``b`` (default zero; a given ``x0`` costs one product).
    shift : float
        Solve with ``A - shift I`` (scipy's meaning); ``shift = -lambda`` gives the damped
        system ``(A + lambda I) x = b``.
    rtol, atol : float
        A column has converged when ``||b - (A - shift I) x|| <= max(rtol ||b||, atol)``.
    maxiter : int, optional
        Iterations per column (default ``5 n``, scipy's).
    M : LinearOperator or array-like, optional
        Symmetric positive definite preconditioner approximating ``(A - shift I)^{-1}``.
    callback : callable, optional
        ``callback(xk)`` after every iteration (shape ``(n, 1)`` or ``(n, k)``).

    Returns
    -------
    SolveResult
        Unpacks as ``x, info``; ``residual_norms`` are true residuals of the returned ``x``.
        A singular inconsistent system ends at a least-squares solution with
        ``converged=False`` and a :class:`~specop.ConvergenceWarning` saying so.

    Raises
    ------
    NonFiniteError
        When a product returns NaN or Inf (the iteration is named).
    ValueError, TypeError
        For bad arguments (each names the argument).
    """
    A, n = prepare(A, "minres")
    rtol, atol = check_real(rtol, "rtol"), check_real(atol, "atol")
    shift = check_real(shift, "shift", low=-np.inf)
    maxiter = check_maxiter(maxiter, 5 * n)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    Mop = None if M is None else as_operator(M, A, "M")
    rdt = recurrence_dtype(A, "float64")
    Aeff = A.shift(shift) if shift else A
    return solve_block(A, Aeff, b, x0, rtol, atol, maxiter, _Minres(A, shift, Mop, rdt), "minres", callback, rdt)
