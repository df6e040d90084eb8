"""Block estimate of the 1-norm ``||A||_1 = max_j sum_i |a_ij|`` from products with ``A`` and ``A^T``.

Higham & Tisseur, "A block algorithm for matrix 1-norm estimation, with an application
to 1-norm pseudospectra", SIAM J. Matrix Anal. Appl. 21 (2000), Algorithm 2.4: ``t``
columns at a time, a power-method-like alternation between ``Y = A X`` (the estimate is
the largest column 1-norm of ``Y``) and ``Z = A^T sign(Y)`` (its largest rows point to
the next unit vectors to try), with resampling of parallel sign columns and a history of
visited indices. The estimate is always a lower bound, ``est <= ||A||_1``, attained by the
unit vector ``v`` (``w = A v``, ``||w||_1 = est``); it is usually exact or within a
factor 3, and the iteration stops after at most ``itmax`` rounds. When ``t >= n`` the
1-norm is computed exactly from the dense matrix (``n`` products), as scipy does.

The products run on the operator's backend; per round the host sees the column sums
(``t`` numbers), the signs of ``Y`` (``n x t``, for the parallel-column tests and
resampling) and the row maxima of ``Z`` (``n`` numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import check_positive_int
from specop.linalg._krylov_util import as_operator, check_bool, to_host

__all__ = ["onenormest", "OneNormEstimate"]


@dataclass(frozen=True)
class OneNormEstimate:
    """Outcome of ``onenormest(..., full_output=True)``; unpacks as ``est, v, w``.

    Attributes
    ----------
    estimate : float
        Lower bound of ``||A||_1`` (exact when ``t >= n``).
    v : array, shape (n,)
        Unit vector ``e_j`` with ``||A v||_1 = estimate``.
    w : array, shape (n,)
        ``A v``.
    matvecs, rmatvecs : int
        Products with ``A`` and ``A^T`` (columns of the blocks counted one by one).
    iterations : int
        Rounds of Algorithm 2.4.
    resamples : int
        Sign columns resampled because they were parallel to another one.
    exact : bool
        Whether the value is the exact 1-norm (``t >= n``).
    """

    estimate: float
    v: Any = field(repr=False)
    w: Any = field(repr=False)
    matvecs: int = 0
    rmatvecs: int = 0
    iterations: int = 0
    resamples: int = 0
    exact: bool = False

    def __iter__(self):
        yield from (self.estimate, self.v, self.w)


def onenormest(A: Any, t: int = 2, itmax: int = 5, compute_v: bool = False, compute_w: bool = False, *,
               seed: Any = None, full_output: bool = False) -> Any:
    """Estimate ``||A||_1`` of a square operator (scipy's signature and return values).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square operator with ``rmatvec``.
    t : int
        Block size (columns per product); larger is more accurate and costs more.
    itmax : int
        Maximum number of rounds, at least 2.
    compute_v, compute_w : bool
        Also return ``v`` (a unit vector) and/or ``w = A v``, as scipy.
    seed : int, numpy Generator or None
        Seed of the random sign columns (scipy uses the global numpy state).
    full_output : bool
        Return a :class:`OneNormEstimate` with counts instead of scipy's value/tuple.

    Returns
    -------
    float, or tuple ``(est, v)``, ``(est, w)``, ``(est, v, w)``, or OneNormEstimate
        As scipy: ``est`` alone unless ``compute_v``/``compute_w`` ask for more.
    """
    A = as_operator(A, "A", square=True)
    n = A.shape[0]
    t = check_positive_int(t, "t")
    itmax = check_positive_int(itmax, "itmax", low=2)
    compute_v = check_bool(compute_v, "compute_v")
    compute_w = check_bool(compute_w, "compute_w")
    full_output = check_bool(full_output, "full_output")
    res = _exact(A) if t >= n else _Estimator(A, t, itmax, np.random.default_rng(seed)).run()
    if full_output:
        return res
    if compute_v or compute_w:
        out: tuple = (res.estimate,)
        if compute_v:
            out += (res.v,)
        if compute_w:
            out += (res.w,)
        return out
    return res.estimate


def _unit(A: Any, j: int) -> Any:
    e = np.zeros(A.shape[0])
    e[j] = 1.0
    return backends.from_numpy(e, A.xp, A.device, A.dtype)


def _exact(A: Any) -> OneNormEstimate:
    D = A.to_dense()
    sums = to_host(A.xp.sum(A.xp.abs(D), axis=0))
    if not np.isfinite(sums).all():
        from specop._errors import NonFiniteError

        raise NonFiniteError("onenormest: the dense matrix has NaN or Inf entries")
    j = int(np.argmax(sums))
    return OneNormEstimate(float(sums[j]), _unit(A, j), D[:, j], A.shape[0], 0, 0, 0, True)


class _Estimator:
    """Algorithm 2.4 of Higham & Tisseur with ``t < n`` columns."""

    def __init__(self, A: Any, t: int, itmax: int, rng: np.random.Generator) -> None:
        self.A, self.t, self.itmax, self.rng, self.n = A, t, itmax, rng, A.shape[0]
        self.xp = A.xp
        self.matvecs = self.rmatvecs = self.resamples = 0

    def _dev(self, X: np.ndarray) -> Any:
        return backends.from_numpy(np.ascontiguousarray(X), self.xp, self.A.device, self.A.dtype)

    def _signs(self, size: int) -> np.ndarray:
        return self.rng.integers(0, 2, size=size) * 2.0 - 1.0

    def _resample(self, S: np.ndarray, S_old: np.ndarray | None) -> np.ndarray:
        """Replace every column of ``S`` parallel to an earlier column or to a column of ``S_old``."""
        for i in range(self.t):
            while self._parallel(S, i, S_old):
                S[:, i] = self._signs(self.n)
                self.resamples += 1
        return S

    def _parallel(self, S: np.ndarray, i: int, S_old: np.ndarray | None) -> bool:
        dots = S[:, :i].T @ S[:, i]
        if np.any(dots == self.n):
            return True
        return S_old is not None and bool(np.any(S_old.T @ S[:, i] == self.n))

    def run(self) -> OneNormEstimate:
        xp, n, t = self.xp, self.n, self.t
        X = np.ones((n, t))
        if t > 1:
            X[:, 1:] = np.stack([self._signs(n) for _ in range(t - 1)], axis=1)
            X = self._resample(X, None)
        X /= n
        Xd = self._dev(X)
        ind_hist = np.zeros(0, dtype=np.intp)
        est_old, k = 0.0, 1
        S_old: np.ndarray | None = None
        ind: np.ndarray | None = None
        ind_best, w = 0, None
        while True:
            Y = self.A.matmat(Xd)
            self.matvecs += t
            mags = to_host(xp.sum(xp.abs(Y), axis=0))
            if not np.isfinite(mags).all():
                from specop._errors import NonFiniteError

                raise NonFiniteError(f"onenormest: the product A X at iteration {k} returned NaN or Inf")
            est, best_j = float(mags.max()), int(np.argmax(mags))
            if est > est_old or k == 2:
                if k >= 2 and ind is not None:
                    ind_best = int(ind[best_j])
                w = Y[:, best_j]
            if k >= 2 and est <= est_old:
                est = est_old
                break
            est_old = est
            if k > self.itmax:
                break
            S = np.where(to_host(Y) < 0, -1.0, 1.0)  # sign, with sign(0) = 1
            if S_old is not None and all(np.any(S_old.T @ S[:, i] == n) for i in range(t)):
                break  # every column parallel to an old one: no new information
            if t > 1:
                S = self._resample(S, S_old)
            S_old = S
            Z = self.A.rmatmat(self._dev(S))
            self.rmatvecs += t
            h = to_host(xp.max(xp.abs(Z), axis=1))
            if not np.isfinite(h).all():
                from specop._errors import NonFiniteError

                raise NonFiniteError(f"onenormest: the product A^T S at iteration {k} returned NaN or Inf")
            if k >= 2 and h.max() == h[ind_best]:
                break
            ind = np.argsort(h)[::-1][: t + ind_hist.size].copy()
            if t > 1:
                if np.isin(ind[:t], ind_hist).all():
                    break
                seen = np.isin(ind, ind_hist)
                ind = np.concatenate([ind[~seen], ind[seen]])
            X = np.zeros((n, t))
            X[ind[:t], np.arange(t)] = 1.0
            Xd = self._dev(X)
            ind_hist = np.concatenate([ind_hist, ind[:t][~np.isin(ind[:t], ind_hist)]])
            k += 1
        return OneNormEstimate(est, _unit(self.A, ind_best), w, self.matvecs, self.rmatvecs, k, self.resamples)
