"""LSQR: least squares ``min ||A x - b||^2 + damp^2 ||x||^2`` for any (m, n) operator.

Paige & Saunders, "LSQR: an algorithm for sparse linear equations and sparse least
squares", ACM Trans. Math. Softw. 8 (1982), Sec. 4-6: Golub-Kahan bidiagonalization of
``A`` from ``b`` (``beta u = A v - alpha u``, ``alpha v = A^T u - beta v``), a QR
factorization of the lower bidiagonal by plane rotations updated one step at a time
(the damping eliminated by one more rotation per step), and the stopping rules of their
Sec. 6 on the estimates of ``||r||``, ``||A^T r||``, ``||A||`` and ``cond(A)``, as in
scipy's implementation (same outputs ``istop, itn, r1norm, ...`` and codes 0-7).
The vectors live on the operator's backend in float64 where available; the host reads
the two norms ``alpha, beta`` per step (the rotations and stopping tests need them).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from specop import backends
from specop._errors import ConvergenceWarning, NonFiniteError
from specop.linalg._common import check_positive_int, norm, recurrence_dtype
from specop.linalg._krylov_util import as_operator, check_bool, check_nonnegative, dev, eps_of, to_host, vector_in

__all__ = ["lsqr", "LsqrResult"]

MESSAGES = (
    "The exact solution is x = 0",
    "Ax - b is small enough, given atol, btol",
    "The least-squares solution is good enough, given atol",
    "The estimate of cond(Abar) has exceeded conlim",
    "Ax - b is small enough for this machine",
    "The least-squares solution is good enough for this machine",
    "Cond(Abar) seems to be too large for this machine",
    "The iteration limit has been reached",
)


@dataclass(frozen=True)
class LsqrResult:
    """Outcome of :func:`lsqr`; unpacks like scipy's 10-tuple
    ``x, istop, itn, r1norm, r2norm, anorm, acond, arnorm, xnorm, var``.

    Attributes
    ----------
    x : array, shape (n,)
        The solution (operator's backend, device and dtype).
    istop : int
        Why the iteration stopped (0-7, :data:`MESSAGES`).
    itn : int
        Iterations.
    r1norm, r2norm : float
        ``||b - A x||`` and ``sqrt(r1norm^2 + damp^2 ||x||^2)`` (estimates of the recurrence).
    anorm, acond : float
        Estimates of the Frobenius norm and condition number of ``[A; damp I]``.
    arnorm : float
        Estimate of ``||A^T r - damp^2 x||``.
    xnorm : float
        ``||x||``.
    var : array, shape (n,)
        Estimates of the diagonal of ``(A^T A + damp^2 I)^{-1}`` (``calc_var=True``; zeros otherwise).
    matvecs, rmatvecs : int
        Products with ``A`` and with ``A^T``.
    converged : bool
        False for ``istop`` 3, 6 (ill-conditioned) and 7 (iteration limit).
    """

    x: Any = field(repr=False)
    istop: int
    itn: int
    r1norm: float
    r2norm: float
    anorm: float
    acond: float
    arnorm: float
    xnorm: float
    var: Any = field(repr=False)
    matvecs: int = 0
    rmatvecs: int = 0
    converged: bool = True

    def __iter__(self):
        yield from (self.x, self.istop, self.itn, self.r1norm, self.r2norm, self.anorm, self.acond,
                    self.arnorm, self.xnorm, self.var)

    @property
    def message(self) -> str:
        return MESSAGES[self.istop]


def lsqr(A: Any, b: Any, damp: float = 0.0, atol: float = 1e-6, btol: float = 1e-6, conlim: float = 1e8,
         iter_lim: int | None = None, show: bool = False, calc_var: bool = False, x0: Any = None) -> LsqrResult:
    """Least-squares solution of ``A x = b`` (optionally damped) by LSQR, with scipy's signature.

    Parameters
    ----------
    A : LinearOperator or array-like
        ``(m, n)`` operator with ``rmatvec``.
    b : array, shape (m,) or (m, 1)
        Right-hand side on the operator's backend and device.
    damp : float
        Damping ``lambda >= 0``.
    atol, btol : float
        Stopping tolerances (Paige & Saunders Sec. 6; 0 means machine precision).
    conlim : float
        Stop when the estimate of ``cond([A; damp I])`` exceeds it (0: no limit).
    iter_lim : int, optional
        Iteration limit (default ``2 n``).
    show : bool
        Print the iteration log.
    calc_var : bool
        Estimate the diagonal of ``(A^T A + damp^2 I)^{-1}``.
    x0 : array, optional
        Starting guess (then LSQR solves for the correction).

    Returns
    -------
    LsqrResult

    Raises
    ------
    ValueError
        For bad shapes or parameters.
    NonFiniteError
        When a product returns NaN or Inf (the iteration is named).
    """
    A = as_operator(A, "A")
    m, n = A.shape
    xp, rdt = A.xp, recurrence_dtype(A, "float64")
    u = vector_in(A, b, m, "b", rdt)
    damp = check_nonnegative(damp, "damp") or 0.0
    atol = check_nonnegative(atol, "atol") or 0.0
    btol = check_nonnegative(btol, "btol") or 0.0
    conlim = check_nonnegative(conlim, "conlim") or 0.0
    iter_lim = 2 * n if iter_lim is None else check_positive_int(iter_lim, "iter_lim", low=0)
    show = check_bool(show, "show")
    calc_var = check_bool(calc_var, "calc_var")
    eps = eps_of(rdt)
    counts = [0, 0]

    def mv(v: Any) -> Any:
        counts[0] += 1
        return backends.astype(A.matvec(backends.astype(v, A.dtype, xp)), rdt, xp)

    def rmv(v: Any) -> Any:
        counts[1] += 1
        return backends.astype(A.rmatvec(backends.astype(v, A.dtype, xp)), rdt, xp)

    def host_norm(v: Any, itn: int) -> float:
        value = float(to_host(norm(xp, v)))
        if not math.isfinite(value):
            raise NonFiniteError(f"lsqr: a product at iteration {itn} returned NaN or Inf")
        return value

    var = xp.zeros(n, dtype=rdt, **dev(A))
    bnorm = host_norm(u, 0)
    if x0 is None:
        x = xp.zeros(n, dtype=rdt, **dev(A))
        beta = bnorm
    else:
        x = vector_in(A, x0, n, "x0", rdt)
        u = u - mv(x)
        beta = host_norm(u, 0)
    if show:
        print(f"LSQR: least-squares solution of A x = b; A has {m} rows and {n} columns")
        print(f"damp = {damp:.14e}  calc_var = {calc_var}  atol = {atol:.2e}  btol = {btol:.2e}  "
              f"conlim = {conlim:.2e}  iter_lim = {iter_lim}")
    alfa = 0.0
    if beta > 0:
        u = u / beta
        v = rmv(u)
        alfa = host_norm(v, 0)
    else:
        v = xp.zeros(n, dtype=rdt, **dev(A))
    if alfa > 0:
        v = v / alfa
    w = v
    st = _State(alfa=alfa, beta=beta, rhobar=alfa, phibar=beta, bnorm=bnorm)
    rnorm = beta
    arnorm = alfa * beta

    def finish(istop: int, itn: int, r1: float, r2: float) -> LsqrResult:
        converged = istop not in (3, 6, 7)
        if show:
            print(f"istop = {istop}: {MESSAGES[istop]}; itn = {itn}, r1norm = {r1:.3e}, r2norm = {r2:.3e}, "
                  f"anorm = {st.anorm:.3e}, acond = {st.acond:.3e}, arnorm = {st.arnorm:.3e}, "
                  f"xnorm = {st.xnorm:.3e}")
        if not converged:
            warnings.warn(f"lsqr: stopped at iteration {itn} without meeting the tolerances ({MESSAGES[istop]}): "
                          f"||r|| = {r1:.3e}, ||A^T r|| = {st.arnorm:.3e}, cond estimate = {st.acond:.3e} "
                          f"(atol = {atol:.1e}, btol = {btol:.1e}, conlim = {conlim:.1e})",
                          ConvergenceWarning, stacklevel=3)
        return LsqrResult(xp.astype(x, A.dtype), istop, itn, r1, r2, st.anorm, st.acond, st.arnorm, st.xnorm,
                          xp.astype(var, A.dtype), counts[0], counts[1], converged)

    if arnorm == 0:
        return finish(0, 0, rnorm, rnorm)
    ctol = 1.0 / conlim if conlim > 0 else 0.0
    r1norm = r2norm = rnorm
    istop, itn = 0, 0
    while itn < iter_lim:
        itn += 1
        u = mv(v) - st.alfa * u
        both = to_host(xp.stack([norm(xp, u), norm(xp, w)]))  # one read: beta and ||w|| (for ||d_k||)
        if not math.isfinite(float(both.sum())):
            raise NonFiniteError(f"lsqr: a product at iteration {itn} returned NaN or Inf")
        beta, wnorm = float(both[0]), float(both[1])
        if beta > 0:
            u = u / beta
            st.anorm = math.sqrt(st.anorm ** 2 + st.alfa ** 2 + beta ** 2 + damp ** 2)
            v = rmv(u) - beta * v
            alfa = host_norm(v, itn)
            if alfa > 0:
                v = v / alfa
            st.alfa = alfa
        t1, t2, rho = st.step(beta, damp)
        dk = w / rho
        x = x + t1 * w
        w = v + t2 * w
        st.ddnorm += (wnorm / rho) ** 2
        if calc_var:
            var = var + dk * dk
        r1norm, r2norm = st.norms(damp)
        test1 = r2norm / bnorm
        # scale-free (scipy adds eps to the denominator: a matrix of norm 1e-30 then "converges" at once)
        test2 = st.arnorm / (st.anorm * r2norm) if st.anorm * r2norm > 0 else math.inf
        test3 = 1.0 / (st.acond + eps)
        t1n = test1 / (1 + st.anorm * st.xnorm / bnorm)
        rtol = btol + atol * st.anorm * st.xnorm / bnorm
        if itn >= iter_lim:
            istop = 7
        if 1 + test3 <= 1:
            istop = 6
        if 1 + test2 <= 1:
            istop = 5
        if 1 + t1n <= 1:
            istop = 4
        if test3 <= ctol:
            istop = 3
        if test2 <= atol:
            istop = 2
        if test1 <= rtol:
            istop = 1
        if show and (n <= 40 or itn <= 10 or itn >= iter_lim - 10 or itn % 10 == 0 or istop):
            print(f"{itn:6d} r1norm {r1norm:10.3e} r2norm {r2norm:10.3e} compatible {test1:8.1e} "
                  f"LS {test2:8.1e} norm A {st.anorm:8.1e} cond A {st.acond:8.1e}")
        if istop:
            break
    if istop == 0:  # iter_lim = 0
        istop = 7
    return finish(istop, itn, r1norm, r2norm)


class _State:
    """The scalar recurrences of LSQR (host floats)."""

    def __init__(self, alfa: float, beta: float, rhobar: float, phibar: float, bnorm: float) -> None:
        self.alfa, self.beta, self.rhobar, self.phibar, self.bnorm = alfa, beta, rhobar, phibar, bnorm
        self.anorm = self.acond = self.ddnorm = self.res2 = self.xnorm = self.xxnorm = self.z = 0.0
        self.cs2, self.sn2 = -1.0, 0.0
        self.arnorm = alfa * beta
        self.psi = self.tau = 0.0

    def step(self, beta: float, damp: float) -> tuple[float, float, float]:
        """Rotations of one step: returns the update weights ``t1, t2`` and ``rho``."""
        if damp > 0:  # eliminate the damping parameter
            rhobar1 = math.hypot(self.rhobar, damp)
            cs1, sn1 = self.rhobar / rhobar1, damp / rhobar1
            self.psi = sn1 * self.phibar
            self.phibar = cs1 * self.phibar
        else:
            rhobar1, self.psi = self.rhobar, 0.0
        cs, sn, rho = _sym_ortho(rhobar1, beta)  # eliminate the subdiagonal beta
        theta = sn * self.alfa
        self.rhobar = -cs * self.alfa
        phi = cs * self.phibar
        self.phibar = sn * self.phibar
        self.tau = sn * phi
        # norm of x from a rotation on the right (Paige & Saunders Sec. 5.2)
        delta = self.sn2 * rho
        gambar = -self.cs2 * rho
        rhs = phi - delta * self.z
        zbar = rhs / gambar
        self.xnorm = math.sqrt(self.xxnorm + zbar ** 2)
        gamma = math.hypot(gambar, theta)
        self.cs2, self.sn2 = gambar / gamma, theta / gamma
        self.z = rhs / gamma
        self.xxnorm += self.z ** 2
        return phi / rho, -theta / rho, rho

    def norms(self, damp: float) -> tuple[float, float]:
        """``(r1norm, r2norm)`` and the condition and ``||A^T r||`` estimates."""
        self.acond = self.anorm * math.sqrt(self.ddnorm)
        self.res2 += self.psi ** 2
        rnorm = math.sqrt(self.phibar ** 2 + self.res2)
        self.arnorm = self.alfa * abs(self.tau)
        if damp > 0:
            r1sq = rnorm ** 2 - damp ** 2 * self.xxnorm
            r1norm = math.copysign(math.sqrt(abs(r1sq)), r1sq)
        else:
            r1norm = rnorm
        return r1norm, rnorm


def _sym_ortho(a: float, b: float) -> tuple[float, float, float]:
    """Stable ``(c, s, r)`` with ``c a + s b = r``, ``-s a + c b = 0`` (Choi, Paige & Saunders 2011)."""
    if b == 0:
        return math.copysign(1.0, a) if a != 0 else 1.0, 0.0, abs(a)
    if a == 0:
        return 0.0, math.copysign(1.0, b), abs(b)
    if abs(b) > abs(a):
        tau = a / b
        s = math.copysign(1.0, b) / math.sqrt(1 + tau * tau)
        c = s * tau
        return c, s, b / s
    tau = b / a
    c = math.copysign(1.0, a) / math.sqrt(1 + tau * tau)
    s = c * tau
    return c, s, a / c
