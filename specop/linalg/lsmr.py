"""LSMR for least-squares problems ``min ||b - A x||^2 + damp^2 ||x||^2`` with any ``A`` (m x n).

Fong & Saunders, "LSMR: an iterative algorithm for sparse least-squares problems",
SIAM J. Sci. Comput. 33, 2011: Golub-Kahan bidiagonalization of ``A`` from ``b``
(one product with ``A`` and one with ``A^T`` per iteration) and a second QR of the
bidiagonal, which makes ``||A^T r_k||`` decrease monotonically (MINRES applied to the
normal equations). The recurrences, the estimates of ``||r||``, ``||A^T r||``,
``||A||_F`` and ``cond(A)``, and the stopping tests are the paper's Algorithm 1 and
Section 3 (the authors' reference code, also scipy's):

* ``istop = 1``: ``||r|| <= btol ||b|| + atol ||A|| ||x||`` (a compatible system);
* ``istop = 2``: ``||A^T r|| <= atol ||A|| ||r||`` (a least-squares solution);
* ``istop = 3``: ``cond(A) >= conlim``; 4, 5, 6: the same three at machine precision;
  7: ``maxiter`` reached.

Columns of a block ``b`` run independent recurrences through one ``matmat`` and one
``rmatmat`` per iteration. At the end the true ``||r||`` and ``||A^T r||`` of the returned
``x`` are computed (two products per column) and the convergence tests are repeated on
them: ``residual_norms`` and ``converged`` are those of the true residual. With ``x0`` and
``damp > 0`` the damped problem is solved for ``x`` itself (scipy damps the correction
``x - x0`` instead) by running LSMR on the stacked operator ``[A; damp I]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._solver_common import (
    SYNC_EVERY,
    SolveResult,
    _Columns,
    _round,
    as_block,
    cdot,
    check_maxiter,
    check_real,
    finish_step,
    result_dtype,
    status,
)
from specop.operators.base import LinearOperator

__all__ = ["lsmr", "LsmrResult"]


@dataclass(frozen=True)
class LsmrResult(SolveResult):
    """Outcome of :func:`lsmr`: a :class:`SolveResult` plus LSMR's estimates (true values where stated).

    Attributes
    ----------
    istop : numpy.ndarray
        scipy's stopping reason per column (see the module docstring).
    normar : numpy.ndarray
        True ``||A^T r - damp^2 x||`` of the returned ``x``.
    norma, conda : numpy.ndarray
        LSMR's estimates of ``||[A; damp I]||_F`` and of its condition number.
    normx : numpy.ndarray
        ``||x||``.
    """

    istop: np.ndarray = field(default_factory=lambda: np.zeros(()), repr=False)
    normar: np.ndarray = field(default_factory=lambda: np.zeros(()), repr=False)
    norma: np.ndarray = field(default_factory=lambda: np.zeros(()), repr=False)
    conda: np.ndarray = field(default_factory=lambda: np.zeros(()), repr=False)
    normx: np.ndarray = field(default_factory=lambda: np.zeros(()), repr=False)


class _Stacked(LinearOperator):
    """``[A; damp I]`` of shape ``(m + n, n)``, for ``x0`` with damping."""

    def __init__(self, A: LinearOperator, damp: float) -> None:
        self.A, self.damp = A, damp
        super().__init__((A.shape[0] + A.shape[1], A.shape[1]), A.dtype, xp=A.xp, device=A.device)

    def _matmat(self, V: Any) -> Any:
        return self.xp.concat([self.A.matmat(V), self.damp * V], axis=0)

    def _rmatmat(self, U: Any) -> Any:
        m = self.A.shape[0]
        return self.A.rmatmat(U[:m, ...]) + self.damp * U[m:, ...]


def _rot(xp: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Givens rotation ``(c, s, r)`` with ``c a + s b = r = hypot(a, b)`` (``c = 1, s = 0`` for zeros)."""
    r = xp.sqrt(a * a + b * b)
    nz = r > 0
    safe = xp.where(nz, r, 1.0)
    return xp.where(nz, a / safe, 1.0), xp.where(nz, b / safe, 0.0), r


def _unit(xp: Any, U: Any) -> tuple[Any, Any]:
    nrm = xp.sqrt(cdot(xp, U, U))
    return U * xp.where(nrm > 0, 1.0 / xp.where(nrm > 0, nrm, 1.0), 0.0), nrm


def _unless(xp: Any, first: Any, old: Any, new: Any) -> Any:
    """``old`` at the first iteration, else ``new`` (``first``: a bool, traced inside a compiled kernel)."""
    if isinstance(first, bool):
        return old if first else new
    return xp.where(first, old, new)


@backends.kernel
def _lower(xp: Any, AV: Any, alpha: Any, U: Any) -> tuple[Any, Any]:
    """``beta u = A v - alpha u`` (normalized) after the product with ``A``."""
    return _unit(xp, AV - alpha * U)


@backends.kernel(static=("masked",))
def _upper(xp: Any, s: dict[str, Any], U: Any, beta: Any, ATU: Any, damp: float, atol: float, btol: float,
           ctol: float, first: bool = False, masked: bool = False) -> tuple[dict[str, Any], Any]:
    """The rest of an iteration after the product with ``A^T``: the new state and the ``(2, k)`` report."""
    act = s["active"]
    V, alpha = _unit(xp, ATU - beta * s["V"])
    chat, shat, alphahat = _rot(xp, s["alphabar"], xp.zeros_like(beta) + damp)
    rhoold = s["rho"]
    c, sn, rho = _rot(xp, alphahat, beta)
    thetanew, alphabar = sn * alpha, c * alpha
    rhobarold, zetaold = s["rhobar"], s["zeta"]
    thetabar, rhotemp = s["sbar"] * rho, s["cbar"] * rho
    cbar, sbar, rhobar = _rot(xp, s["cbar"] * rho, thetanew)
    zeta, zetabar = cbar * s["zetabar"], -sbar * s["zetabar"]
    den = rhoold * rhobarold
    Hbar = s["H"] - xp.where(den != 0, thetabar * rho / xp.where(den != 0, den, 1.0), 0.0) * s["Hbar"]
    den2 = rho * rhobar
    step = xp.where(act & (den2 != 0), zeta / xp.where(den2 != 0, den2, 1.0), 0.0)
    X = s["X"] + step * Hbar
    H = V - xp.where(rho != 0, thetanew / xp.where(rho != 0, rho, 1.0), 0.0) * s["H"]
    # ||r|| estimate (Section 3.3)
    betaacute, betacheck = chat * s["betadd"], -shat * s["betadd"]
    betahat, betadd = c * betaacute, -sn * betaacute
    thetatildeold = s["thetatilde"]
    ctildeold, stildeold, rhotildeold = _rot(xp, s["rhodold"], thetabar)
    thetatilde, rhodold = stildeold * rhobar, ctildeold * rhobar
    betad = -stildeold * s["betad"] + ctildeold * betahat
    tautildeold = (zetaold - thetatildeold * s["tautildeold"]) / xp.where(rhotildeold != 0, rhotildeold, 1.0)
    taud = (zeta - thetatilde * tautildeold) / xp.where(rhodold != 0, rhodold, 1.0)
    d = s["d"] + betacheck * betacheck
    normr = xp.sqrt(d + (betad - taud) ** 2 + betadd * betadd)
    # ||A|| and cond(A) estimates (Section 3.4-3.5)
    normA2 = s["normA2"] + beta * beta
    normA = xp.sqrt(normA2)
    normA2 = normA2 + alpha * alpha
    # rhobar starts as the placeholder 1 (not a value of the problem): left out of both at the first step,
    # else cond(A) of a matrix of norm 1e-30 is estimated as 1e30 (scipy's lsmr stops there, istop 3)
    maxrbar = _unless(xp, first, s["maxrbar"], xp.maximum(s["maxrbar"], rhobarold))
    minrbar = _unless(xp, first, s["minrbar"], xp.minimum(s["minrbar"], rhobarold))
    condA = xp.maximum(maxrbar, rhotemp) / xp.where(xp.minimum(minrbar, rhotemp) > 0,
                                                    xp.minimum(minrbar, rhotemp), 1e-300)
    normar = xp.abs(zetabar)
    normx = xp.sqrt(cdot(xp, X, X))
    normb = xp.where(s["normb"] > 0, s["normb"], 1.0)
    test1 = normr / normb
    test2 = xp.where(normA * normr != 0, normar / xp.where(normA * normr != 0, normA * normr, 1.0), xp.inf)
    test3 = 1.0 / condA
    t1 = test1 / (1.0 + normA * normx / normb)
    rtol = btol + atol * normA * normx / normb
    code = status(xp, normr, (test1 <= rtol, 1.0), (test2 <= atol, 2.0), (test3 <= ctol, 3.0),
                  (1.0 + t1 <= 1.0, 4.0), (1.0 + test2 <= 1.0, 5.0), (1.0 + test3 <= 1.0, 6.0))
    new = {"U": U, "V": V, "H": H, "Hbar": Hbar, "alpha": alpha, "alphabar": alphabar, "zetabar": zetabar,
           "rho": rho, "rhobar": rhobar, "cbar": cbar, "sbar": sbar, "betadd": betadd, "betad": betad,
           "rhodold": rhodold, "tautildeold": tautildeold, "thetatilde": thetatilde, "zeta": zeta, "d": d,
           "normA2": normA2, "maxrbar": maxrbar, "minrbar": minrbar, "normA": normA, "condA": condA}
    out = {name: xp.where(act, v, s[name]) if masked else v for name, v in new.items()}
    out["X"] = X
    finite = xp.isfinite(beta) & xp.isfinite(alpha) & xp.isfinite(normr)
    out["active"], report = finish_step(xp, normr, xp.where(act, code, code * 0.0), act, finite)
    return out, report


class _Lsmr:
    """One LSMR iteration on every column (masked by ``state["active"]``)."""

    products = 2

    def __init__(self, A: Any, damp: float, atol: float, btol: float, conlim: float, rdt: Any) -> None:
        self.A, self.damp, self.atol, self.btol, self.rdt, self.xp = A, damp, atol, btol, rdt, A.xp
        self.ctol = 1.0 / conlim if conlim > 0 else 0.0
        self.eps = float(np.finfo(backends.dtype_name(rdt)).eps)

    def _av(self, V: Any) -> Any:
        return backends.astype(self.A.matmat(backends.astype(V, self.A.dtype, self.xp)), self.rdt, self.xp)

    def _atu(self, U: Any) -> Any:
        return backends.astype(self.A.rmatmat(backends.astype(U, self.A.dtype, self.xp)), self.rdt, self.xp)

    def start(self, X: Any, R: Any, normb: Any) -> dict[str, Any]:
        """State from ``R = b - A x0`` (stacked for damping); ``normb = ||b||`` scales the tests."""
        xp = self.xp
        U, beta = _unit(xp, R)
        V, alpha = _unit(xp, self._atu(U))
        one, zero = xp.ones_like(beta), xp.zeros_like(beta)
        return {"X": X, "U": U, "V": V, "H": V, "Hbar": xp.zeros_like(V), "alpha": alpha, "alphabar": alpha,
                "zetabar": alpha * beta, "rho": one, "rhobar": one, "cbar": one, "sbar": zero, "betadd": beta,
                "betad": zero, "rhodold": one, "tautildeold": zero, "thetatilde": zero, "zeta": zero, "d": zero,
                "normA2": alpha * alpha, "maxrbar": zero, "minrbar": zero + float("inf"), "normb": normb,
                "normA": alpha, "condA": one, "first": True}

    def step(self, s: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        xp = self.xp
        U, beta = _lower(xp, self._av(s["V"]), s["alpha"], s["U"])
        arrays = {name: v for name, v in s.items() if name not in ("first", "masked")}
        new, report = _upper(xp, arrays, U, beta, self._atu(U), self.damp, self.atol, self.btol, self.ctol,
                             first=s["first"], masked=s["masked"])
        s.update(new)
        s["first"] = False
        return s, report

    def finals(self, s: dict[str, Any]) -> dict[str, Any]:
        return {"norma": s["normA"], "conda": s["condA"]}


def lsmr(A: Any, b: Any, *, damp: float = 0.0, atol: float = 1e-6, btol: float = 1e-6, conlim: float = 1e8,
         maxiter: int | None = None, x0: Any = None) -> LsmrResult:
    """Least-squares solution of ``A x = b`` (any shape, ``A`` needs ``rmatvec``) by LSMR.

    Solves ``min ||b - A x||^2 + damp^2 ||x||^2`` (the minimum-norm solution for a
    rank-deficient ``A`` from ``x0 = 0``).

    Parameters
    ----------
    A : LinearOperator or array-like
        ``m x n`` operator with an adjoint product (``rmatmat``), e.g. a Jacobian.
    b : array, shape (m,) or (m, k)
        Right-hand side(s); the columns of a block go through one ``matmat`` and one
        ``rmatmat`` per iteration.
    damp : float
        Damping (Tikhonov) factor.
    atol, btol, conlim : float
        scipy's stopping tolerances (see the module docstring).
    maxiter : int, optional
        Iterations per column (default ``min(m, n)``, scipy's).
    x0 : array, optional
        Starting guess, shape ``(n,)`` or ``(n, k)``.

    Returns
    -------
    LsmrResult
        Unpacks as ``x, info`` (info 0: converged, ``> 0``: iterations when not);
        ``residual_norms`` are the true ``sqrt(||b - A x||^2 + damp^2 ||x||^2)``.
    """
    from specop.operators.scipy_bridge import aslinearoperator

    A = aslinearoperator(A)
    m, n = A.shape
    damp = check_real(damp, "damp")
    atol, btol, conlim = check_real(atol, "atol"), check_real(btol, "btol"), check_real(conlim, "conlim")
    maxiter = check_maxiter(maxiter, min(m, n))
    rdt = backends.promote_dtype(A.xp, A.dtype, "float64")
    xp = A.xp
    B, vector = as_block(A, b, "b", m, rdt)
    k = B.shape[1]
    matvecs = 0
    if x0 is None:
        X0 = None
        op, R, kdamp = A, B, damp
    else:
        want = (n,) if vector else (n, k)
        if not backends.is_array(x0) or tuple(x0.shape) != want:
            shape = tuple(x0.shape) if backends.is_array(x0) else type(x0).__name__
            raise ValueError(f"x0: expected shape {want}, got {shape}")
        X0, _ = as_block(A, x0, "x0", n, rdt)
        R = B - backends.astype(A.matmat(backends.astype(X0, A.dtype, xp)), rdt, xp)
        matvecs += k
        op, kdamp = A, damp
        if damp > 0:
            op, kdamp = _Stacked(A, damp), 0.0
            R = xp.concat([R, -damp * X0], axis=0)
    kernel = _Lsmr(op, kdamp, atol, btol, conlim, rdt)
    h = backends.to_numpy
    normb = h(xp.sqrt(cdot(xp, B, B))).astype(np.float64)
    cols = _Columns(k, h(xp.sqrt(cdot(xp, R, R))).astype(np.float64))
    sync_every = 1 if backends.is_host(xp, A.device) else SYNC_EVERY
    with backends.host_blas_single_thread(xp):
        matvecs += k  # the first A^T u
        matvecs += _round(op, kernel, xp.zeros((n, k), dtype=rdt, **_kw(A)), R, np.arange(k), normb,
                          maxiter, cols, sync_every, "lsmr", None, k)
        X = xp.stack(cols.x, axis=1)
        if X0 is not None:
            X = X0 + X
        out_dtype = result_dtype(A, b)
        X = backends.astype(X, out_dtype, xp)
        Rt = B - backends.astype(A.matmat(backends.astype(X, A.dtype, xp)), rdt, xp)
        Xr = backends.astype(X, rdt, xp)
        G = backends.astype(A.rmatmat(backends.astype(Rt, A.dtype, xp)), rdt, xp) - damp * damp * Xr
        matvecs += 2 * k
    normx = h(xp.sqrt(cdot(xp, Xr, Xr))).astype(np.float64)
    normr = np.sqrt(h(cdot(xp, Rt, Rt)).astype(np.float64) + damp * damp * normx**2)
    normar = np.sqrt(h(cdot(xp, G, G)).astype(np.float64))
    norma = np.array([float(h(f["norma"])) if f else 0.0 for f in cols.finals])
    conda = np.array([float(h(f["conda"])) if f else 1.0 for f in cols.finals])
    istop = np.where(cols.iters >= maxiter, np.where(cols.codes > 0, cols.codes, 7), cols.codes)
    istop = np.where(normb == 0, 0, istop)
    conv = (normb == 0) | (normr <= btol * normb + atol * norma * normx) | (normar <= atol * norma * normr) \
        | (normar == 0)
    if not conv.all():
        bad = np.flatnonzero(~conv)
        warnings.warn(f"lsmr: {bad.size} of {k} right-hand side(s) not converged after {cols.iters[bad].tolist()} "
                      f"iterations (istop {istop[bad].tolist()}): ||r|| = {normr[bad].tolist()}, "
                      f"||A^T r|| = {normar[bad].tolist()}, cond estimate {conda[bad].tolist()} (conlim {conlim:g})",
                      ConvergenceWarning, stacklevel=2)
    sq = (lambda a: a[0]) if vector else (lambda a: a)
    length = max(len(hh) for hh in cols.history)
    hist_arr = np.array([hh + [hh[-1]] * (length - len(hh)) for hh in cols.history], dtype=np.float64).T
    info_c = np.where(conv, 0, np.maximum(cols.iters, 1))
    return LsmrResult(x=X[:, 0] if vector else X, info=0 if conv.all() else int(cols.iters.max()),
                      residual_norms=sq(normr), iterations=int(cols.iters.max()), matvecs=int(matvecs),
                      converged=bool(conv.all()), residual_history=hist_arr[:, 0] if vector else hist_arr,
                      column_info=sq(info_c), column_iterations=sq(cols.iters.copy()), method="lsmr",
                      istop=sq(istop), normar=sq(normar), norma=sq(norma), conda=sq(conda), normx=sq(normx))


def _kw(A: LinearOperator) -> dict[str, Any]:
    return {} if A.device is None else {"device": A.device}
