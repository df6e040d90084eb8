"""LOBPCG: block preconditioned eigensolver for ``A x = lambda B x`` (``A`` symmetric, ``B`` SPD).

Knyazev, "Toward the optimal preconditioned eigensolver: locally optimal block
preconditioned conjugate gradient method", SIAM J. Sci. Comput. 23 (2001), Alg. 4.1: each
iteration runs Rayleigh-Ritz on the span of the current block ``X``, the preconditioned
residuals ``W = M (A X - B X Lambda)`` of the unconverged columns, and the previous search
directions ``P``; the best ``k`` Ritz vectors become the new ``X``, their component in
``span(W, P)`` the new ``P``. Converged columns are soft-locked (they stay in ``X`` but
get no new directions), as in scipy.

Orthogonalization follows Duersch, Shao, Yang & Gu, "A robust and efficient
implementation of LOBPCG", SIAM J. Sci. Comput. 40 (2018): ``W`` is ``B``-orthogonalized
against ``X`` and ``P`` (two passes) and ``B``-orthonormalized by SVQB (Stathopoulos & Wu
2002) with dropping of directions that have become numerically dependent, and the new
``P`` is built from the Ritz coefficients orthogonalized, in the small space, against the
new ``X`` (their Sec. 3-4), so the basis ``[X, W, P]`` is ``B``-orthonormal up to rounding.
Rayleigh-Ritz then runs on the host in float64 on the explicit Gram matrices with one
more SVQB-style scaling and drop, so a basis that lost rank never breaks ``eigh``
(Cholesky-free). Blocks live on the operator's backend in float64 where available.

Conventions of scipy: ``tol`` is an absolute bound on every residual norm
``||A x - lambda B x||``; its default is scipy's ``n sqrt(eps)``, scaled down by the size of the
first block's products, ``min(1, max_i ||A x_i||)``, so a matrix of norm 1e-30 is not "converged" by
its random start (scipy returns such a start unchanged); an explicit ``tol`` that the random start
already meets while it is above ``1e-3 max_i ||A x_i||`` is warned about (``ConvergenceWarning``);
``maxiter`` (default 20) iterations;
the best block seen (smallest mean residual) is returned after a final Rayleigh-Ritz
step with fresh products, so the reported residual norms are the true ones;
``restartControl``: the directions ``P`` are dropped when the residual grows ``2**restartControl``
times over the smallest seen. Eigenvalues are returned largest first for
``largest=True``, smallest first otherwise (scipy's order).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from specop import backends
from specop._errors import ConvergenceWarning, NonFiniteError
from specop.linalg._common import check_positive_int, recurrence_dtype
from specop.linalg._krylov_util import as_operator, check_bool, check_nonnegative, dev, eps_of, to_host

__all__ = ["lobpcg", "LobpcgResult"]


@dataclass(frozen=True)
class LobpcgResult:
    """Outcome of :func:`lobpcg`; unpacks like scipy's return tuple.

    ``w, V = lobpcg(...)``; with ``retLambdaHistory`` / ``retResidualNormsHistory`` the
    histories follow, in scipy's order.

    Attributes
    ----------
    eigenvalues : numpy.ndarray, shape (k,)
        float64 on the host, largest first for ``largest=True``, else smallest first.
    eigenvectors : array, shape (n, k)
        ``B``-orthonormal columns (backend and dtype of ``X``).
    residual_norms : numpy.ndarray, shape (k,)
        True ``||A x - lambda B x||`` of the returned pairs.
    iterations : int
        Iterations run.
    matvecs, bmatvecs, psolves : int
        Columns multiplied by ``A``, by ``B`` and by ``M``.
    converged : bool
        Whether every residual norm is at most ``tol``.
    tol : float
        The tolerance used.
    lambda_history, residual_norms_history : list of numpy.ndarray
        Per iteration (initial, each iteration, final), as scipy returns them.
    """

    eigenvalues: np.ndarray
    eigenvectors: Any = field(repr=False)
    residual_norms: np.ndarray
    iterations: int
    matvecs: int
    bmatvecs: int
    psolves: int
    converged: bool
    tol: float
    lambda_history: list = field(default_factory=list, repr=False)
    residual_norms_history: list = field(default_factory=list, repr=False)
    returns: tuple[bool, bool] = (False, False)

    def __iter__(self):
        yield self.eigenvalues
        yield self.eigenvectors
        if self.returns[0]:
            yield self.lambda_history
        if self.returns[1]:
            yield self.residual_norms_history


def lobpcg(A: Any, X: Any, B: Any = None, M: Any = None, Y: Any = None, tol: float | None = None,
           maxiter: int | None = None, largest: bool = True, verbosityLevel: int = 0,
           retLambdaHistory: bool = False, retResidualNormsHistory: bool = False,
           restartControl: int = 20) -> LobpcgResult:
    """``k`` extreme eigenpairs of ``A x = lambda B x`` by LOBPCG (scipy's signature).

    Parameters
    ----------
    A : LinearOperator, array-like or callable
        Symmetric ``(n, n)`` operator; a callable maps a block ``(n, j)`` to ``A @ block``.
    X : array, shape (n, k)
        Initial block (linearly independent columns), on the operator's backend.
    B : LinearOperator, array-like or callable, optional
        Symmetric positive definite ``(n, n)`` (default identity).
    M : LinearOperator, array-like or callable, optional
        Preconditioner, an approximation of ``A^{-1}`` (default none).
    Y : array, shape (n, c), optional
        Constraints: the iteration stays in the ``B``-orthogonal complement of ``span(Y)``.
    tol : float, optional
        Absolute residual tolerance (default ``n sqrt(eps) min(1, s)``, ``s`` the largest
        ``||A x_i||`` of the first Rayleigh-Ritz block: scipy's default, tightened for
        matrices of small norm).
    maxiter : int, optional
        Iterations (default 20).
    largest : bool
        Largest (True) or smallest eigenvalues.
    verbosityLevel : int
        Print progress when positive.
    retLambdaHistory, retResidualNormsHistory : bool
        Also return the histories when unpacking (they are always in the result).
    restartControl : int
        Drop ``P`` when the mean residual grows ``2**restartControl`` times its minimum.

    Returns
    -------
    LobpcgResult

    Raises
    ------
    ValueError
        For bad shapes, parameters, dependent constraints or initial block.
    NonFiniteError
        When a product returns NaN or Inf (the iteration is named).
    """
    if not backends.is_array(X) or X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array of shape (n, k), got {type(X).__name__}"
                         + (f" of shape {tuple(X.shape)}" if backends.is_array(X) else ""))
    Aop = as_operator(A, "A", square=True, callable_like=X)
    n, k = int(X.shape[0]), int(X.shape[1])
    if Aop.shape[0] != n:
        raise ValueError(f"X: expected {Aop.shape[0]} rows (the size of A), got shape {tuple(X.shape)}")
    if k < 1 or k > n:
        raise ValueError(f"X: expected 1 <= k <= n = {n} columns, got {k}")
    ops = {}
    for name, op in (("B", B), ("M", M)):
        if op is None:
            continue
        o = as_operator(op, name, square=True, callable_like=X)
        if o.shape[0] != n or o.backend != Aop.backend:
            raise ValueError(f"{name}: expected a {Aop.backend} operator of shape {(n, n)}, got a {o.backend} one "
                             f"of shape {o.shape}")
        ops[name] = o
    if Y is not None and (not backends.is_array(Y) or Y.ndim != 2 or Y.shape[0] != n or Y.shape[1] + k > n):
        raise ValueError(f"Y: expected an array of shape ({n}, c) with c + k <= n, got "
                         + (f"shape {tuple(Y.shape)}" if backends.is_array(Y) else type(Y).__name__))
    tol_f = check_nonnegative(tol, "tol", allow_none=True)
    maxiter = 20 if maxiter is None else check_positive_int(maxiter, "maxiter", low=0)
    largest = check_bool(largest, "largest")
    for name, flag in (("retLambdaHistory", retLambdaHistory), ("retResidualNormsHistory", retResidualNormsHistory)):
        check_bool(flag, name)
    check_positive_int(verbosityLevel, "verbosityLevel", low=0)
    restartControl = check_positive_int(restartControl, "restartControl", low=0)
    eps = max(eps_of(Aop.dtype), eps_of(X.dtype))
    run = _Lobpcg(Aop, ops.get("B"), ops.get("M"), n, k, tol_f or None, maxiter, largest, int(verbosityLevel),
                  restartControl, X.dtype, float(np.sqrt(eps) * n))
    with backends.host_blas_single_thread(Aop.xp):
        return run.run(X, Y, (bool(retLambdaHistory), bool(retResidualNormsHistory)))


class _Lobpcg:
    def __init__(self, A: Any, B: Any, M: Any, n: int, k: int, tol: float | None, maxiter: int, largest: bool,
                 verbose: int, restart_control: int, out_dtype: Any, default_tol: float) -> None:
        self.A, self.B, self.M, self.n, self.k = A, B, M, n, k
        self.given_tol = tol is not None
        self.tol = default_tol if tol is None else tol  # the default is scaled in run()
        self.maxiter, self.largest, self.verbose = maxiter, largest, verbose
        self.rc, self.out_dtype = restart_control, out_dtype
        self.xp, self.rdt = A.xp, recurrence_dtype(A, "float64")
        self.eps = eps_of(self.rdt)
        self.counts = {"A": 0, "B": 0, "M": 0}
        self.it = 0
        self.Y = self.BY = self.YBY = None

    # ------------------------------------------------------------ products
    def _apply(self, name: str, V: Any) -> Any:
        op = {"A": self.A, "B": self.B, "M": self.M}[name]
        if op is None:
            return V
        self.counts[name] += int(V.shape[1])
        out = backends.astype(op.matmat(backends.astype(V, op.dtype, self.xp)), self.rdt, self.xp)
        if out.shape != V.shape:
            raise ValueError(f"{name}: the product of a block of shape {tuple(V.shape)} has shape {tuple(out.shape)}")
        return out

    def _gram(self, U: Any, V: Any) -> np.ndarray:
        G = to_host(U.T @ V)
        if not np.isfinite(G).all():
            raise NonFiniteError(f"lobpcg: a product at iteration {self.it} returned NaN or Inf")
        return G

    def _small(self, C: np.ndarray) -> Any:
        return self.xp.asarray(np.ascontiguousarray(C), dtype=self.rdt, **dev(self.A))

    def _constrain(self, V: Any) -> Any:
        """``V - Y (Y^T B Y)^{-1} (B Y)^T V``: the ``B``-orthogonal projection off ``span(Y)``."""
        if self.Y is None:
            return V
        C = scipy.linalg.cho_solve(self.YBY, self._gram(self.BY, V))
        return V - self.Y @ self._small(C)

    def _svqb(self, V: Any, BV: Any, drop: float) -> tuple[Any, Any, int]:
        """``B``-orthonormalize ``V`` by SVQB, dropping directions with relative weight below ``drop``."""
        G = self._gram(V, BV)
        G = (G + G.T) / 2
        d = np.sqrt(np.maximum(np.diag(G), 0.0))
        d[d == 0] = 1.0
        theta, Z = np.linalg.eigh(G / d[:, None] / d[None, :])
        keep = theta > drop * max(float(theta.max()), 0.0) if theta.size else theta > 0
        if not keep.any():
            return V[:, :0], BV[:, :0], 0
        T = (Z[:, keep] / np.sqrt(theta[keep])[None, :]) / d[:, None]
        Tt = self._small(T)
        return V @ Tt, BV @ Tt, int(keep.sum())

    def _select(self, lam: np.ndarray) -> np.ndarray:
        order = np.argsort(lam, kind="stable")
        return order[::-1][: self.k] if self.largest else order[: self.k]

    def _rayleigh_ritz(self, S: Any, AS: Any, BS: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values/coefficients of the block ``S`` (host float64; rank-revealing, no Cholesky)."""
        GA = self._gram(S, AS)
        GB = self._gram(S, BS)
        GA, GB = (GA + GA.T) / 2, (GB + GB.T) / 2
        d = np.sqrt(np.maximum(np.diag(GB), 0.0))
        d[d == 0] = 1.0
        theta, Z = np.linalg.eigh(GB / d[:, None] / d[None, :])
        keep = theta > 100 * self.eps * max(float(theta.max()), 0.0) * theta.size
        T = (Z[:, keep] / np.sqrt(theta[keep])[None, :]) / d[:, None]
        lam, C = np.linalg.eigh(T.T @ GA @ T)
        return lam, T @ C, GB

    # ------------------------------------------------------------------ run
    def run(self, X0: Any, Y: Any, returns: tuple[bool, bool]) -> LobpcgResult:
        xp = self.xp
        X = backends.astype(X0, self.rdt, xp)
        if Y is not None:
            self.Y = backends.astype(Y, self.rdt, xp)
            self.BY = self._apply("B", self.Y)
            try:
                self.YBY = scipy.linalg.cho_factor(self._gram(self.Y, self.BY))
            except np.linalg.LinAlgError as exc:
                raise ValueError("Y: expected linearly independent constraints (Y^T B Y is not positive definite)") \
                    from exc
            X = self._constrain(X)
        BX = self._apply("B", X)
        X, BX, r = self._svqb(X, BX, 1e3 * self.eps)
        if r < self.k:
            raise ValueError(f"X: expected {self.k} linearly independent columns (after the constraints), "
                             f"got rank {r}")
        AX = self._apply("A", X)
        lam, C, _ = self._rayleigh_ritz(X, AX, BX)
        sel = self._select(lam)
        Ct = self._small(C[:, sel])
        X, AX, BX, lam = X @ Ct, AX @ Ct, BX @ Ct, lam[sel]
        scale = float(np.sqrt(np.abs(to_host(xp.sum(AX * AX, axis=0)))).max())  # the residuals' natural size
        if not self.given_tol and 0.0 < scale < 1.0:
            self.tol *= scale
        lam_hist, res_hist = [lam.copy()], []
        active = np.ones(self.k, dtype=bool)
        P = AP = BP = None
        best = (np.inf, X, 0)
        for it in range(self.maxiter + 1):
            self.it = it + 1
            R = AX - BX * self._small(lam[None, :])
            rn = np.sqrt(np.abs(to_host(xp.sum(R * R, axis=0))))
            if not np.isfinite(rn).all():
                raise NonFiniteError(f"lobpcg: a product at iteration {it} returned NaN or Inf")
            res_hist.append(rn)
            mean = float(rn.mean())
            if mean < best[0]:
                best = (mean, X, it)
            elif mean > 2.0 ** self.rc * best[0] and P is not None:  # diverging: drop P, refresh the products
                P = AP = BP = None
                AX, BX = self._apply("A", X), self._apply("B", X)
            active &= rn > self.tol
            if self.verbose:
                print(f"lobpcg iteration {it}: active {int(active.sum())}, eigenvalues {lam}, residuals {rn}")
            if not active.any():
                if it == 0 and self.given_tol and self.tol > 1e-3 * scale:
                    warnings.warn(f"lobpcg: tol={self.tol:.3g} is an absolute bound (scipy's convention) and the "
                                  f"start block already meets it, yet it is not small against the size of the "
                                  f"products ({scale:.3g}): the eigenvalues may be far from converged; pass a "
                                  f"smaller tol (or tol=None, scaled to the matrix)", ConvergenceWarning,
                                  stacklevel=4)
                break
            idx = xp.asarray(np.flatnonzero(active), **dev(self.A))
            W = self._apply("M", xp.take(R, idx, axis=1))
            W = self._constrain(W)
            for _ in range(2):  # B-orthogonalize against X and P (CGS2)
                BW = self._apply("B", W) if self.B is not None else W
                W = W - X @ self._small(self._gram(BX, W))
                if P is not None:
                    W = W - P @ self._small(self._gram(BP, W))
            BW = self._apply("B", W) if self.B is not None else W
            W, BW, r = self._svqb(W, BW, 1e3 * self.eps)
            if r == 0:
                warnings.warn(f"lobpcg: the preconditioned residuals at iteration {it} are dependent on the "
                              f"current basis; stopping with residuals {rn}", ConvergenceWarning, stacklevel=3)
                break
            AW = self._apply("A", W)
            blocks = [X, W] if P is None else [X, W, P]
            S = xp.concat(blocks, axis=1)
            AS = xp.concat([AX, AW] if P is None else [AX, AW, AP], axis=1)
            BS = xp.concat([BX, BW] if P is None else [BX, BW, BP], axis=1)
            lam_all, C, GB = self._rayleigh_ritz(S, AS, BS)
            sel = self._select(lam_all)
            Cx = C[:, sel]
            Cp = Cx[:, active].copy()
            Cp[: self.k] = 0.0  # the part of the new X in span(W, P) ...
            Cp -= Cx @ (Cx.T @ GB @ Cp)  # ... made B-orthogonal to the new X in the small space
            Gp = Cp.T @ GB @ Cp
            Gp = (Gp + Gp.T) / 2
            theta, Z = np.linalg.eigh(Gp)
            keep = theta > 1e3 * self.eps * max(float(theta.max()), 0.0) if theta.size else theta > 0
            Cxt = self._small(Cx)
            X, AX, BX, lam = S @ Cxt, AS @ Cxt, BS @ Cxt, lam_all[sel]
            if keep.any():
                Cpt = self._small(Cp @ (Z[:, keep] / np.sqrt(theta[keep])[None, :]))
                P, AP, BP = S @ Cpt, AS @ Cpt, BS @ Cpt
            else:
                P = AP = BP = None
            lam_hist.append(lam.copy())
        else:  # the loop ran out: judge the last block too
            R = AX - BX * self._small(lam[None, :])
            rn = np.sqrt(np.abs(to_host(xp.sum(R * R, axis=0))))
            res_hist.append(rn)
            if np.isfinite(rn).all() and float(rn.mean()) < best[0]:
                best = (float(rn.mean()), X, self.maxiter + 1)
        return self._final(best, returns, lam_hist, res_hist)

    def _final(self, best: tuple, returns: tuple[bool, bool], lam_hist: list, res_hist: list) -> LobpcgResult:
        """Rayleigh-Ritz on the best block with fresh products: the reported residuals are the true ones."""
        xp = self.xp
        X = self._constrain(best[1])
        AX, BX = self._apply("A", X), self._apply("B", X)
        lam, C, _ = self._rayleigh_ritz(X, AX, BX)
        sel = self._select(lam)
        Ct = self._small(C[:, sel])
        X, AX, BX, lam = X @ Ct, AX @ Ct, BX @ Ct, lam[sel]
        R = AX - BX * self._small(lam[None, :])
        rn = np.sqrt(np.abs(to_host(xp.sum(R * R, axis=0))))
        if not np.isfinite(rn).all():
            raise NonFiniteError("lobpcg: a product in the final Rayleigh-Ritz step returned NaN or Inf")
        lam_hist.append(lam.copy())
        res_hist.append(rn)
        converged = bool(rn.max() <= self.tol) and lam.size == self.k
        if not converged:
            warnings.warn(f"lobpcg: not converged after {self.it} iterations ({self.counts['A']} matvecs): residual "
                          f"norms {np.array2string(rn, precision=3)} vs tol {self.tol:.3e}",
                          ConvergenceWarning, stacklevel=3)
        if self.verbose:
            print(f"lobpcg final eigenvalues {lam}, residual norms {rn}")
        return LobpcgResult(lam, xp.astype(X, self.out_dtype), rn, self.it, self.counts["A"], self.counts["B"],
                            self.counts["M"], converged, self.tol, lam_hist, res_hist, returns)
