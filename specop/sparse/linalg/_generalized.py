"""``eigsh`` with an ``M`` given only by its products: Lanczos in the ``B``-inner product.

ARPACK's modes 2-5 (Lehoucq, Sorensen & Yang, *ARPACK Users' Guide*, SIAM 1998, section 4.2)
iterate on ``OP`` self-adjoint in ``<u, v>_B = u^T B v`` (``B = M``; ``B = A`` for buckling)::

    mode 2 (sigma None):  OP = M^{-1} A              (Minv, or an inner CG solve on M)
    normal:               OP = (A - sigma M)^{-1} M
    buckling:             OP = (A - sigma M)^{-1} A
    cayley:               OP = (A - sigma M)^{-1} (A + sigma M)

``(A - sigma M)^{-1}`` is the user's ``OPinv`` or an inner MINRES solve. This is a Krylov-Schur
(thick restart) Lanczos of its own, kept beside :mod:`specop.linalg.thick_restart` (whose loop
assumes the Euclidean inner product): it stores ``Q`` and ``B Q`` so that every inner product
``Q^T B w = (B Q)^T w`` costs no product with ``B``, reorthogonalizes fully twice per step, and
recomputes ``B q`` from ``B`` itself for every new basis vector (one ``B`` product a step), so
rounding in ``B Q`` cannot drift. The returned vectors are ``B``-orthonormal, as ARPACK's are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from specop import backends

__all__ = ["BResult", "b_lanczos"]


@dataclass
class BResult:
    eigenvalues: np.ndarray  # nu, ascending
    eigenvectors: Any  # (n, k) backend array, B-orthonormal
    residual_norms: np.ndarray
    converged: bool
    restarts: int
    matvecs: int  # products with OP
    b_products: int  # products with B


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the ``k`` wanted values of ``theta`` (ARPACK's ``which`` on ``nu``)."""
    if which == "LA":
        return np.argsort(theta)[::-1][:k]
    if which == "SA":
        return np.argsort(theta)[:k]
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:k]
    if which == "SM":
        return np.argsort(np.abs(theta), kind="stable")[:k]
    order = np.argsort(theta)  # BE: from both ends, one more from the top for an odd k
    hi, lo = (k + 1) // 2, k // 2
    return np.concatenate([order[::-1][:hi], order[:lo]])


def b_lanczos(op: Callable[[Any], Any], bmul: Callable[[Any], Any], n: int, k: int, which: str, tol: float,
              ncv: int, maxiter: int, v0: Any, xp: Any, dev: Any, dt: Any, rng: Any) -> BResult:
    """The ``k`` wanted eigenpairs of ``OP`` (self-adjoint in ``<., .>_B``) by thick-restart Lanczos.

    ``op`` and ``bmul`` map (n, b) arrays of dtype ``dt`` to (n, b) arrays; convergence is
    ``||OP y - nu y||_B <= max(tol |nu|, 100 eps max |nu|)`` as in :func:`specop.eigsh`.
    """
    eps = float(np.finfo(np.float64).eps)
    m = min(ncv, n)
    if v0 is None:
        v = backends.from_numpy(np.random.default_rng(rng).standard_normal((n, 1)), xp, dev, dt)
    else:
        v = backends.astype(xp.reshape(v0, (n, 1)), dt, xp)
    Bv = bmul(v)
    nb = 1
    s = float(backends.to_numpy(xp.sum(v * Bv)))
    if not s > 0:
        raise ValueError("eigsh: M must be symmetric positive definite (v0^T M v0 <= 0)")
    Q, BQ = [v / s ** 0.5], [Bv / s ** 0.5]
    H = np.zeros((m, m))
    start, nop, restarts = 0, 0, 0
    theta = res = np.zeros(0)
    Y = np.zeros((0, 0))
    while True:
        for j in range(start, m):
            w = op(Q[j])
            nop += 1
            Qm, BQm = xp.concat(Q, axis=1), xp.concat(BQ, axis=1)
            h = np.zeros(j + 1)
            for _ in range(2):  # twice is enough (Kahan-Parlett)
                c = backends.to_numpy(BQm.T @ w).astype(np.float64).reshape(-1)
                w = w - Qm @ backends.from_numpy(c.reshape(-1, 1), xp, dev, dt)
                h += c
            Bw = bmul(w)
            nb += 1
            beta2 = float(backends.to_numpy(xp.sum(w * Bw)))
            H[: j + 1, j] = h
            beta = beta2 ** 0.5 if beta2 > 0 else 0.0
            if j + 1 < m:
                H[j + 1, j] = beta
            if beta <= eps * max(1.0, float(np.abs(H[: j + 1, : j + 1]).max())) * n:
                w = backends.from_numpy(np.random.default_rng(nop).standard_normal((n, 1)), xp, dev, dt)
                Qm = xp.concat(Q, axis=1)
                for _ in range(2):
                    w = w - Qm @ (xp.concat(BQ, axis=1).T @ w)
                Bw = bmul(w)
                nb += 1
                beta, scale = 0.0, float(backends.to_numpy(xp.sum(w * Bw))) ** 0.5
                if j + 1 < m:
                    H[j + 1, j] = 0.0
            else:
                scale = beta
            Q.append(w / scale)
            BQ.append(Bw / scale)
            last_beta = beta
        T = 0.5 * (H + H.T)
        theta, Y = np.linalg.eigh(T)
        # residual of the Ritz pair (theta_i, Q Y_i): |beta_m Y[m-1, i]| (plus the restart row: symmetric T holds it)
        res = np.abs(last_beta * Y[m - 1, :])
        want = _select(theta, k, which)
        top = float(np.max(np.abs(theta))) if theta.size else 0.0
        ok = res[want] <= np.maximum(max(tol, eps) * np.abs(theta[want]), 100 * eps * top)
        if ok.all() or restarts >= maxiter or m >= n:
            break
        restarts += 1
        keep = min(max(k + (m - k) // 2, k + 1), m - 1)
        sel = _select(theta, keep, which)
        Yk = backends.from_numpy(Y[:, sel], xp, dev, dt)
        Qm, BQm = xp.concat(Q[:m], axis=1), xp.concat(BQ[:m], axis=1)
        Qk, BQk = Qm @ Yk, BQm @ Yk
        Q = [Qk[:, i : i + 1] for i in range(keep)] + [Q[m]]
        BQ = [BQk[:, i : i + 1] for i in range(keep)] + [BQ[m]]
        H = np.zeros((m, m))
        H[:keep, :keep] = np.diag(theta[sel])
        H[keep, :keep] = last_beta * Y[m - 1, sel]
        H[:keep, keep] = 0.0  # filled by the next step's Gram-Schmidt
        start = keep
    want = _select(theta, k, which)
    want = want[np.argsort(theta[want])]
    X = xp.concat(Q[:m], axis=1) @ backends.from_numpy(Y[:, want], xp, dev, dt)
    top = float(np.max(np.abs(theta))) if theta.size else 0.0
    conv = bool(np.all(res[want] <= np.maximum(max(tol, eps) * np.abs(theta[want]), 100 * eps * top)))
    return BResult(theta[want], X, res[want], conv, restarts, nop, nb)


def operator_maps(op: Any, Mop: Any, Minv: Any, sigma: float | None, mode: str, OPinv: Any,
                  inner_rtol: float) -> tuple[Callable[[Any], Any], Callable[[Any], Any], list, Any]:
    """``(OP, B, inner solvers, dt)`` for an ``M`` given by its products (see the module docstring).

    Products run in the working dtype ``dt`` (float64 where the backend has it); the inner
    solvers are :class:`specop.InverseOperator` objects whose ``inner_matvecs`` count.
    """
    from specop.linalg.inverse import InverseOperator
    from specop.operators import FunctionOperator
    from specop.sparse.linalg._convert import user_inverse

    xp, n = op.xp, op.shape[0]
    dt = backends.promote_dtype(xp, op.dtype)

    def mul(B: Any) -> Callable[[Any], Any]:
        return lambda X: backends.astype(B.matmat(backends.astype(X, B.dtype, B.xp)), dt, xp)

    a_map, m_map = mul(op), mul(Mop)
    solvers: list = []
    maxit = max(10 * n, 100)
    if sigma is None:
        if Minv is not None:
            minv = mul(user_inverse(Minv, "Minv", n))
        else:
            inv = InverseOperator(Mop, method="cg", rtol=inner_rtol, maxiter=maxit, on_failure="warn",
                                  check_symmetric=False)
            solvers.append(inv)
            minv = mul(inv)
        return (lambda X: minv(a_map(X))), m_map, solvers, dt
    if OPinv is not None:
        sinv = mul(user_inverse(OPinv, "OPinv", n))
    else:
        s = float(sigma)
        S = FunctionOperator(lambda x: op.matvec(x) - s * Mop.matvec(x), (n, n), op.dtype, like=op,
                             symmetric=True, matmat=lambda X: op.matmat(X) - s * Mop.matmat(X), device=op.device)
        inv = InverseOperator(S, method="minres", rtol=inner_rtol, maxiter=maxit, on_failure="warn",
                              check_symmetric=False)
        solvers.append(inv)
        sinv = mul(inv)
    if mode == "normal":
        return (lambda X: sinv(m_map(X))), m_map, solvers, dt
    if mode == "buckling":
        return (lambda X: sinv(a_map(X))), a_map, solvers, dt
    s2 = float(sigma)
    return (lambda X: sinv(a_map(X) + s2 * m_map(X))), m_map, solvers, dt
