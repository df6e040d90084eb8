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

A single-vector Krylov space holds one vector per eigenspace, so, like :func:`specop.eigsh`
(``verify=True``), the run ends with a multiplicity check (``_check``): the converged pairs are
locked, a fresh seeded random vector ``B``-orthogonal to them starts a Lanczos run on the
deflated ``OP`` until its extreme Ritz pairs have settled clear of the wanted set
(:func:`specop.linalg._which.settled`); a missed copy found on the way is locked and the check
starts again. It has a budget of ``maxiter`` restarts of its own; a check that does not settle
warns (:class:`specop.ConvergenceWarning`) and returns the converged pairs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._locking import extra_kept
from specop.linalg._which import kept, settled, wanted

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
    verified: bool = False  # the multiplicity check settled (see _check)


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the ``k`` wanted values of ``theta`` (ARPACK's ``which`` on ``nu``, as :func:`specop.eigsh`)."""
    return wanted(theta, k, which)


def _b_orth(w: Any, Qm: Any, BQm: Any, xp: Any, dev: Any, dt: Any) -> tuple[Any, np.ndarray]:
    """``w`` made ``B``-orthogonal to the columns of ``Qm`` (classical Gram-Schmidt twice, Kahan-Parlett:
    twice is enough) and the coefficients ``Qm^T B w`` (float64, host), from ``B Qm`` without a ``B`` product."""
    h = np.zeros(Qm.shape[1])
    for _ in range(2):
        c = backends.to_numpy(BQm.T @ w).astype(np.float64).reshape(-1)
        w = w - Qm @ backends.from_numpy(c.reshape(-1, 1), xp, dev, dt)
        h += c
    return w, h


def b_lanczos(op: Callable[[Any], Any], bmul: Callable[[Any], Any], n: int, k: int, which: str, tol: float,
              ncv: int, maxiter: int, v0: Any, xp: Any, dev: Any, dt: Any, rng: Any) -> BResult:
    """The ``k`` wanted eigenpairs of ``OP`` (self-adjoint in ``<., .>_B``) by thick-restart Lanczos.

    ``op`` and ``bmul`` map (n, b) arrays of dtype ``dt`` to (n, b) arrays; convergence is
    ``||OP y - nu y||_B <= max(tol |nu|, 100 eps max |nu|)`` as in :func:`specop.eigsh`.
    """
    eps = float(np.finfo(np.float64).eps)
    m = min(ncv, n)
    gen = np.random.default_rng(rng)  # the start vector, then the multiplicity check's fresh vectors
    if v0 is None:
        v = backends.from_numpy(gen.standard_normal((n, 1)), xp, dev, dt)
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
            w, h = _b_orth(w, xp.concat(Q, axis=1), xp.concat(BQ, axis=1), xp, dev, dt)
            Bw = bmul(w)
            nb += 1
            beta2 = float(backends.to_numpy(xp.sum(w * Bw)))
            H[: j + 1, j] = h
            beta = beta2 ** 0.5 if beta2 > 0 else 0.0
            if j + 1 < m:
                H[j + 1, j] = beta
            if beta <= eps * max(1.0, float(np.abs(H[: j + 1, : j + 1]).max())) * n:
                w = backends.from_numpy(np.random.default_rng(nop).standard_normal((n, 1)), xp, dev, dt)
                w = _b_orth(w, xp.concat(Q, axis=1), xp.concat(BQ, axis=1), xp, dev, dt)[0]
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
    X, BX = (xp.concat(Z[:m], axis=1) @ backends.from_numpy(Y[:, want], xp, dev, dt) for Z in (Q, BQ))
    top = float(np.max(np.abs(theta))) if theta.size else 0.0
    conv = bool(np.all(res[want] <= np.maximum(max(tol, eps) * np.abs(theta[want]), 100 * eps * top)))
    vals, rn, verified, cnt = theta[want], res[want], m >= n, [nop, nb, 0]  # m >= n: the basis spans everything
    if conv and not verified:
        X, vals, rn, verified = _check(op, bmul, n, k, which, max(tol, eps), m, maxiter, (X, BX, vals, rn, top),
                                       xp, dev, dt, gen, cnt)
    order = _select(vals, k, which)
    order = order[np.argsort(vals[order], kind="stable")]
    X = X @ backends.from_numpy(np.eye(vals.size)[:, order], xp, dev, dt)  # a permutation: exact
    return BResult(vals[order], X, rn[order], conv, restarts, cnt[0], cnt[1], verified)


def _check(op: Callable[[Any], Any], bmul: Callable[[Any], Any], n: int, k: int, which: str, tol: float, m: int,
           maxiter: int, found: tuple, xp: Any, dev: Any, dt: Any, gen: Any,
           cnt: list[int]) -> tuple[Any, np.ndarray, np.ndarray, bool]:
    """The multiplicity check of :func:`specop.eigsh` (``verify=True``) in the ``B``-inner product.

    ``found`` holds the converged pairs ``(X, B X, values, residuals, max |value|)``; they are locked.
    A fresh random vector, ``B``-orthogonal to the locked ones, starts a thick-restart Lanczos run on
    the deflated ``OP`` that stops once its extreme Ritz pairs have settled clear of the wanted set
    (:func:`specop.linalg._which.settled`, with the margin of :class:`specop.linalg._locking.Acceptance`);
    a wanted pair it converges to instead (a missed copy) is locked and the check starts again. The part
    of a Ritz residual along the locked vectors, ``L^T B OP y``, comes from the Gram-Schmidt coefficients.
    Returns every locked pair (vectors, values, residuals) and whether the check settled within ``maxiter``
    restarts (otherwise it warns, as :func:`specop.eigsh` does). ``cnt`` (OP, B products) is updated.
    """
    eps = float(np.finfo(np.float64).eps)
    L, BL, vals, res, top = found
    restarts, fresh, ends = 0, True, (True, True)
    while True:
        p = int(vals.size)
        mm = min(m, n - p)
        if mm <= 0:
            return L, vals, res, True
        if fresh:  # a seeded random vector, B-orthogonal to the locked ones
            v = _b_orth(backends.from_numpy(gen.standard_normal((n, 1)), xp, dev, dt), L, BL, xp, dev, dt)[0]
            Bv = bmul(v)
            cnt[1] += 1
            s = float(backends.to_numpy(xp.sum(v * Bv))) ** 0.5
            Q, BQ, H, C, start = [v / s], [Bv / s], np.zeros((mm, mm)), np.zeros((p, mm)), 0
        fresh, locked, size, theta = True, False, start, np.zeros(0)
        for j in range(start, mm):
            w = op(Q[j])
            cnt[0] += 1
            w, c = _b_orth(w, xp.concat([L, *Q], axis=1), xp.concat([BL, *BQ], axis=1), xp, dev, dt)
            C[:, j], H[: j + 1, j] = c[:p], c[p:]
            Bw = bmul(w)
            cnt[1] += 1
            beta = max(float(backends.to_numpy(xp.sum(w * Bw))), 0.0) ** 0.5
            size = j + 1
            invariant = beta <= eps * max(1.0, float(np.abs(H[:size, :size]).max())) * n
            if size >= min(5, mm) or invariant:  # enough steps to judge (as specop.linalg._locking)
                theta, S = np.linalg.eigh(0.5 * (H[:size, :size] + H[:size, :size].T))
                rho = np.hypot(beta * np.abs(S[size - 1]), np.linalg.norm(C[:, :size] @ S, axis=0))
                top = max(top, float(np.abs(theta).max()))
                allv = np.concatenate([vals, theta])
                want = wanted(allv, k, which)
                act = want[want >= p] - p
                floor = 100 * eps * top
                ends = (True, True)
                if act.size:  # a wanted value among the new Ritz values: a missed copy once it converges
                    if np.all(rho[act] <= np.maximum(tol * np.abs(theta[act]), floor)):
                        Sa = backends.from_numpy(S[:, act], xp, dev, dt)
                        L = xp.concat([L, xp.concat(Q, axis=1) @ Sa], axis=1)
                        BL = xp.concat([BL, xp.concat(BQ, axis=1) @ Sa], axis=1)
                        vals, res = np.concatenate([vals, theta[act]]), np.concatenate([res, rho[act]])
                        locked = True
                        break
                else:
                    margin = max(tol * float(np.abs(allv[want]).max()), floor)
                    ends = settled(theta, rho, allv[want], which, margin)
                    if all(ends):
                        return L, vals, res, True
                if invariant:
                    break
            if j + 1 < mm:
                H[j + 1, j] = beta
                Q.append(w / beta)
                BQ.append(Bw / beta)
        if locked:
            continue
        restarts += 1
        if restarts > maxiter:
            warnings.warn(f"eigsh: the multiplicity check did not settle after {maxiter} restarts ({cnt[0]} "
                          "products); returning the converged pairs (verified=False)", ConvergenceWarning,
                          stacklevel=4)
            return L, vals, res, False
        if invariant or size < mm:
            continue  # an invariant Krylov space that settled nothing: a fresh vector
        room = mm - 1
        n_keep = min(1 + extra_kept(room - 1), room, size) if room > 1 else 0
        if which in ("LM", "BE") and n_keep < 2 <= room:
            n_keep = 2  # the check settles both ends: keep a Ritz vector of each
        if n_keep == 0:
            continue
        keep = kept(theta, n_keep, which, k, ends)
        Yk = backends.from_numpy(S[:, keep], xp, dev, dt)
        Qk, BQk = xp.concat(Q, axis=1) @ Yk, xp.concat(BQ, axis=1) @ Yk
        Q = [Qk[:, i : i + 1] for i in range(n_keep)] + [w / beta]
        BQ = [BQk[:, i : i + 1] for i in range(n_keep)] + [Bw / beta]
        C = np.concatenate([C[:, :size] @ S[:, keep], np.zeros((p, mm - n_keep))], axis=1)
        H = np.zeros((mm, mm))
        H[:n_keep, :n_keep] = np.diag(theta[keep])
        H[n_keep, :n_keep] = beta * S[size - 1, keep]
        fresh, start = False, n_keep


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
