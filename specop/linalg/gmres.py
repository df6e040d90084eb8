"""Restarted GMRES for a square non-symmetric system ``A x = b`` on any backend.

Saad & Schultz, "GMRES: a generalized minimal residual algorithm for solving nonsymmetric
linear systems", SIAM J. Sci. Stat. Comput. 7 (1986): the Arnoldi process builds an
orthonormal basis ``V`` of the Krylov space of the (left-preconditioned) operator ``M A``
and the Hessenberg matrix ``H = V^T M A V``; Givens rotations reduce ``H`` to triangular
form as it grows, so the least-squares residual ``|g_{j+1}|`` is known after every step
without a product. The Arnoldi vectors are orthogonalized by CGS2 (two passes of classical
Gram-Schmidt in matrix form: one kernel per pass on every backend, orthogonality at
rounding level; Giraud, Langou & Rozloznik 2005) in float64 where the backend has it.

scipy's conventions are kept: left preconditioning (``M`` approximates ``A^{-1}``),
``maxiter`` counts restart cycles (``callback_type="legacy"``: inner iterations), the inner
iteration stops when the preconditioned residual passes an adaptive target and every
cycle ends with the true residual ``||b - A x||``, which decides convergence:
``||b - A x|| <= max(rtol ||b||, atol)``. The reported ``residual_norm`` is that true
residual of the returned ``x``. The host reads the ``j + 2`` Arnoldi coefficients once per
step (the Givens rotations need them); nothing else synchronizes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning, NonFiniteError
from specop.linalg._common import check_positive_int, device_norm, norm, recurrence_dtype
from specop.linalg._krylov_util import (
    as_operator,
    cgs2,
    check_nonnegative,
    dev,
    eps_of,
    to_host,
    vector_in,
)

__all__ = ["gmres", "GmresResult"]

CALLBACK_TYPES = ("x", "pr_norm", "legacy")


@dataclass(frozen=True)
class GmresResult:
    """Outcome of :func:`gmres`; unpacks as ``x, info = gmres(...)`` like scipy.

    Attributes
    ----------
    x : array, shape (n,)
        The solution (the operator's backend and device; dtype of ``A`` and ``b`` promoted).
    info : int
        0 on convergence, else the iteration limit reached (scipy's convention).
    residual_norm : float
        The true ``||b - A x||`` of the returned ``x`` (computed, not estimated).
    target : float
        ``max(rtol ||b||, atol)``.
    iterations : int
        Arnoldi steps (inner iterations) in all.
    cycles : int
        Restart cycles.
    matvecs : int
        Products with ``A`` (including one residual per cycle).
    psolves : int
        Applications of ``M``.
    converged : bool
        ``residual_norm <= target``.
    """

    x: Any = field(repr=False)
    info: int
    residual_norm: float
    target: float
    iterations: int
    cycles: int
    matvecs: int
    psolves: int
    converged: bool

    def __iter__(self):
        yield self.x
        yield self.info


def gmres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0, restart: int | None = None,
          maxiter: int | None = None, M: Any = None, callback: Callable[[Any], Any] | None = None,
          callback_type: str | None = None) -> GmresResult:
    """Solve ``A x = b`` by restarted GMRES (scipy's signature and conventions).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square operator, anything :func:`specop.aslinearoperator` takes.
    b : array, shape (n,) or (n, 1)
        Right-hand side on the operator's backend and device.
    x0 : array, optional
        Starting guess (default zeros).
    rtol, atol : float
        Convergence when ``||b - A x|| <= max(rtol ||b||, atol)``.
    restart : int, optional
        Arnoldi steps between restarts (default ``min(20, n)``).
    maxiter : int, optional
        Maximum number of restart cycles (default ``10 n``); with ``callback_type="legacy"``
        the maximum number of inner iterations, as in scipy.
    M : LinearOperator or array-like, optional
        Approximate inverse of ``A`` (left preconditioner).
    callback : callable, optional
        ``callback(x)`` after every cycle (``callback_type="x"``) or ``callback(r)`` with the
        relative preconditioned residual after every inner iteration ("pr_norm", "legacy").
    callback_type : {"x", "pr_norm", "legacy"}, optional
        Default "legacy" when a callback is given (scipy's default).

    Returns
    -------
    GmresResult

    Raises
    ------
    ValueError
        For bad shapes, tolerances, ``restart``, ``maxiter`` or ``callback_type``.
    NonFiniteError
        When a product with ``A`` or ``M`` returns NaN or Inf (the iteration is named).
    """
    A = as_operator(A, "A", square=True)
    n = A.shape[0]
    xp, rdt = A.xp, recurrence_dtype(A, "float64")
    b_in = b
    bv = vector_in(A, b, n, "b", rdt)
    rtol_f = check_nonnegative(rtol, "rtol")
    atol_f = check_nonnegative(atol, "atol")
    restart = min(20 if restart is None else check_positive_int(restart, "restart"), n)
    maxiter = 10 * n if maxiter is None else check_positive_int(maxiter, "maxiter")
    if callback_type is not None and callback_type not in CALLBACK_TYPES:
        raise ValueError(f"callback_type: expected one of {CALLBACK_TYPES} or None, got {callback_type!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback: expected a callable or None, got {type(callback).__name__}")
    ctype = None if callback is None else (callback_type or "legacy")
    Mop = None if M is None else as_operator(M, "M", square=True)
    if Mop is not None and (Mop.shape[0] != n or Mop.backend != A.backend):
        raise ValueError(f"M: expected a {A.backend} operator of shape {(n, n)}, got a {Mop.backend} one of shape "
                         f"{Mop.shape}")
    out_dtype = xp.result_type(A.dtype, b_in.dtype) if backends.is_array(b_in) else A.dtype
    x = xp.zeros(n, dtype=rdt, **dev(A)) if x0 is None else vector_in(A, x0, n, "x0", rdt)
    with backends.host_blas_single_thread(A.xp, include_host=True):
        return _Gmres(A, Mop, bv, x, rtol_f or 0.0, atol_f or 0.0, restart, maxiter, callback, ctype,
                      out_dtype).run(x0 is not None)


class _Gmres:
    def __init__(self, A: Any, M: Any, b: Any, x: Any, rtol: float, atol: float, restart: int, maxiter: int,
                 callback: Any, ctype: str | None, out_dtype: Any) -> None:
        self.A, self.M, self.b, self.x, self.restart, self.maxiter = A, M, b, x, restart, maxiter
        self.callback, self.ctype, self.out_dtype = callback, ctype, out_dtype
        self.xp, self.rdt = A.xp, recurrence_dtype(A, "float64")
        self.eps = eps_of(self.rdt)
        self.bnorm = float(to_host(norm(self.xp, b)))
        self.target = max(atol, rtol * self.bnorm)
        self.matvecs = self.psolves = self.inner = self.cycles = 0

    def _a(self, v: Any) -> Any:
        self.matvecs += 1
        return backends.astype(self.A.matvec(backends.astype(v, self.A.dtype, self.xp)), self.rdt, self.xp)

    def _m(self, v: Any) -> Any:
        if self.M is None:
            return v
        self.psolves += 1
        return backends.astype(self.M.matvec(backends.astype(v, self.M.dtype, self.xp)), self.rdt, self.xp)

    def _residual(self) -> tuple[Any, float]:
        r = self.b - self._a(self.x)
        rn = float(to_host(norm(self.xp, r)))
        if not math.isfinite(rn):
            raise NonFiniteError(f"gmres: the product A x at iteration {self.inner} returned NaN or Inf")
        return r, rn

    def _finish(self, rnorm: float, converged: bool) -> GmresResult:
        info = 0 if converged else self.maxiter
        if not converged:
            warnings.warn(f"gmres: no convergence after {self.cycles} cycles ({self.inner} iterations, "
                          f"{self.matvecs} matvecs): ||b - A x|| = {rnorm:.3e} > target {self.target:.3e}",
                          ConvergenceWarning, stacklevel=3)
        x = self.xp.astype(self.x, self.out_dtype)
        return GmresResult(x, info, rnorm, self.target, self.inner, self.cycles, self.matvecs, self.psolves,
                           converged)

    def run(self, has_x0: bool) -> GmresResult:
        xp = self.xp
        if self.bnorm == 0.0:
            self.x = xp.zeros_like(self.x)
            return self._finish(0.0, True)
        mb = float(to_host(norm(xp, self._m(self.b))))
        if not math.isfinite(mb):
            raise NonFiniteError("gmres: the preconditioner applied to b returned NaN or Inf")
        ptol_factor = 1.0
        ptol = mb * min(ptol_factor, self.target / self.bnorm)
        if has_x0:
            r, rnorm = self._residual()
        else:
            r, rnorm = self.b, self.bnorm
        if rnorm <= self.target:
            return self._finish(rnorm, True)
        V = xp.zeros((self.restart + 1, self.A.shape[0]), dtype=self.rdt, **dev(self.A))
        for _cycle in range(self.maxiter):
            self.cycles += 1
            V, y, cols, presid, breakdown = self._cycle(V, r, ptol)
            if cols and backends.compiles_per_shape(xp):  # the whole basis, zero coefficients past cols
                coeffs = xp.asarray(np.concatenate([y, np.zeros(V.shape[0] - cols)]), dtype=self.rdt)
                self.x = _combine(xp, self.x, coeffs, V)
            elif cols:
                coeffs = xp.asarray(y, dtype=self.rdt, **dev(self.A))
                self.x = self.x + coeffs @ V[:cols, ...]
            r, rnorm = self._residual()
            if self.ctype == "x":
                self.callback(xp.astype(self.x, self.out_dtype))
            if self.ctype == "legacy" and self.inner >= self.maxiter:
                return self._finish(rnorm, rnorm <= self.target)
            if rnorm <= self.target or breakdown:
                break
            # scipy's adaptive inner target: tighten when the inner residual was met but the true one was not
            ptol_factor = max(self.eps, 0.25 * ptol_factor) if presid <= ptol else min(1.0, 1.5 * ptol_factor)
            ptol = presid * min(ptol_factor, self.target / rnorm)
        return self._finish(rnorm, rnorm <= self.target)

    def _cycle(self, V: Any, r: Any, ptol: float) -> tuple[Any, np.ndarray, int, float, bool]:
        """One Arnoldi cycle from residual ``r``; returns the basis (a new array on JAX), the coefficients
        of the update, their count, the final preconditioned residual estimate and whether the Krylov
        space broke down."""
        xp, m = self.xp, self.restart
        z = self._m(r)
        beta = norm(xp, z)
        beta_h = float(to_host(beta))
        if not math.isfinite(beta_h):
            raise NonFiniteError(f"gmres: the preconditioner at iteration {self.inner} returned NaN or Inf")
        if beta_h == 0.0:
            return V, np.zeros(0), 0, 0.0, True
        V = backends.assign(V, 0, z / beta)
        H = np.zeros((m + 1, m))
        cs, sn = np.zeros(m), np.zeros(m)
        g = np.zeros(m + 1)
        g[0] = beta_h
        presid, breakdown, cols = beta_h, False, 0
        for j in range(m):
            w = self._m(self._a(_row(xp, V, j)))
            w, h1, coeffs = _arnoldi(xp, V, w, j + 1)
            host = to_host(coeffs)
            if not np.isfinite(host).all():
                raise NonFiniteError(f"gmres: a product at iteration {self.inner + 1} returned NaN or Inf")
            hcol, h0_h, h1_h = host[: j + 1], float(host[-2]), float(host[-1])
            if h1_h <= self.eps * h0_h:
                h1_h, breakdown = 0.0, True
            else:
                V = _put(xp, V, j + 1, w, h1)
            col = np.append(hcol, h1_h)
            for i in range(j):  # previous rotations
                col[i], col[i + 1] = cs[i] * col[i] + sn[i] * col[i + 1], -sn[i] * col[i] + cs[i] * col[i + 1]
            c, s, rr = _givens(col[j], col[j + 1])
            cs[j], sn[j] = c, s
            col[j], col[j + 1] = rr, 0.0
            H[: j + 2, j] = col
            g[j], g[j + 1] = c * g[j], -s * g[j]
            presid = abs(g[j + 1])
            self.inner += 1
            cols = j + 1
            if self.ctype in ("legacy", "pr_norm"):
                self.callback(presid / self.bnorm)
            if self.ctype == "legacy" and self.inner >= self.maxiter:
                break
            if presid <= ptol or breakdown:
                break
        return V, _back_substitute(H[:cols, :cols], g[:cols]), cols, presid, breakdown


@backends.kernel
def _row(xp: Any, V: Any, j: Any) -> Any:
    return V[j, ...]


@backends.kernel
def _arnoldi(xp: Any, V: Any, w: Any, rows: Any) -> tuple[Any, Any, Any]:
    """An Arnoldi step after the product: ``w`` orthogonalized against ``V[:rows]`` (CGS2), its norm,
    and the host vector ``[h, ||w|| before, ||w|| after]``."""
    h0 = _norm(xp, w)
    w, h = cgs2(V, w, rows)
    h1 = _norm(xp, w)
    return w, h1, xp.concat([h, h0[None], h1[None]])


def _norm(xp: Any, v: Any) -> Any:
    """:func:`norm`; inside a compiled kernel (no host read) the safe branch is chosen on the device."""
    return device_norm(xp, v) if backends.compiles_per_shape(xp) else norm(xp, v)


@backends.kernel
def _put(xp: Any, V: Any, row: Any, w: Any, h1: Any) -> Any:
    return backends.assign(V, row, w / h1)


@backends.kernel
def _combine(xp: Any, x: Any, coeffs: Any, V: Any) -> Any:
    return x + coeffs @ V


def _givens(a: float, b: float) -> tuple[float, float, float]:
    """``(c, s, r)`` with ``[c s; -s c] [a; b] = [r; 0]``."""
    if b == 0.0:
        return 1.0, 0.0, a
    r = math.hypot(a, b)
    return a / r, b / r, r


def _back_substitute(R: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve the upper-triangular ``R y = g``; a zero pivot (breakdown) gives a zero component."""
    y = g.copy()
    for i in range(y.size - 1, -1, -1):
        y[i] = 0.0 if R[i, i] == 0.0 else (y[i] - R[i, i + 1:] @ y[i + 1:]) / R[i, i]
    return y
