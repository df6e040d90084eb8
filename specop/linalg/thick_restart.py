"""Top-k eigenpairs of a symmetric operator by thick-restart Lanczos with locking.

Thick restart (Wu & Simon, "Thick-restart Lanczos method for large symmetric
eigenvalue problems", SIAM J. Matrix Anal. Appl. 22, 2000): after ``ncv`` Lanczos
vectors the basis is compressed to the best Ritz vectors plus the last residual
direction and the Lanczos process continues from there; the projected matrix is
an arrowhead-plus-tridiagonal, computed here exactly from the full (CGS2)
reorthogonalization coefficients (a Rayleigh-Ritz step on the current basis, as in
Stewart's Krylov-Schur method, SIAM J. Matrix Anal. Appl. 23, 2001).

Converged wanted Ritz pairs are *locked*: they leave the active basis and every
later vector is orthogonalized against them, so the iteration continues on the
deflated operator. A single-vector Krylov space holds only one vector of each
eigenspace, so copies of a repeated eigenvalue are found only through rounding.
With ``verify=True`` (default) the run therefore ends with a check: a fresh random
vector, orthogonal to the locked ones, starts a Lanczos run on the deflated
operator, which stops as soon as its extreme Ritz pairs have settled clear of the
wanted set (see ``_clear``); a copy it finds instead is converged and locked and
the check is repeated. The check restarts like the main iteration until it settles
(within ``maxiter``); it costs few matvecs where the wanted set is separated from
the rest of the spectrum and more where it borders a dense cluster (about 10% more
on the 30^3 grid Laplacian, whose top eigenvalues are triple).
Convergence is checked after every step (Ritz values of the small projected
matrix), not only at restarts, so no matvec is wasted once the wanted pairs have
converged.

A pair ``(theta, y)`` is converged when its residual estimate
``rho = |beta_m s_m| = ||A y - theta y||`` satisfies ``rho <= max(tol |theta|, 100 eps ||A||)``,
with ``||A||`` estimated from below by the largest Ritz value magnitude seen.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._common import (
    check_choice,
    check_finite,
    check_positive_int,
    norm,
    prepare,
    recurrence_dtype,
    start_vector,
)
from specop.linalg.lanczos import project_out

__all__ = ["eigsh", "EigshResult"]

WHICH = ("LA", "SA", "LM", "BE")
#: Fraction of the free basis room kept at a restart beyond the wanted pairs (Wu & Simon keep about half).
KEEP = 0.6


@dataclass(frozen=True)
class EigshResult:
    """Outcome of :func:`eigsh`; unpacks as ``w, v = eigsh(...)`` like scipy.

    Attributes
    ----------
    eigenvalues : numpy.ndarray, shape (k,)
        Ascending (scipy's order), float64 on the host.
    eigenvectors : array of shape (n, k) or None
        Columns match ``eigenvalues``; the operator's backend, dtype and device.
    residual_norms : numpy.ndarray, shape (k,)
        ``||A v - w v||`` estimates of each pair.
    matvecs : int
        Products with ``A`` spent.
    converged : bool
        Whether every pair met the tolerance.
    restarts : int
        Number of thick restarts.
    verified : bool
        Whether the multiplicity check settled (see :func:`eigsh`'s ``verify``):
        False when it was switched off or the run hit ``maxiter``.
    """

    eigenvalues: np.ndarray
    eigenvectors: Any = field(repr=False)
    residual_norms: np.ndarray
    matvecs: int
    converged: bool
    restarts: int = 0
    verified: bool = False

    def __iter__(self):
        yield self.eigenvalues
        yield self.eigenvectors


def _wanted(values: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the ``k`` values wanted by ``which`` (best first)."""
    k = min(k, values.size)
    if which == "LA":
        return np.argsort(-values, kind="stable")[:k]
    if which == "SA":
        return np.argsort(values, kind="stable")[:k]
    if which == "LM":
        return np.argsort(-np.abs(values), kind="stable")[:k]
    top, bottom = k - k // 2, k // 2
    order = np.argsort(values, kind="stable")
    return np.concatenate([order[::-1][:top], order[:bottom]])


def _clear(theta: np.ndarray, rho: np.ndarray, wanted: np.ndarray, which: str, margin: float) -> bool:
    """Whether the deflated extremes are settled clear of the wanted set's edge.

    An eigenvalue that only ties with the edge of the wanted set changes no wanted
    value; one beyond it would. Each relevant extreme Ritz pair ``(theta, rho)`` of
    the verification run must stay inside the edge (``theta + rho <= edge + margin``)
    and be settled, ``rho <= gap / 10`` with ``gap = |edge - theta|``: a random start
    vector has its largest weight on the extreme eigenvectors, so an extreme Ritz
    pair that has converged that far is the extreme eigenpair of the deflated operator
    unless the start vector was nearly orthogonal to a missed one.
    """
    if theta.size == 0:
        return True
    hi, lo = int(np.argmax(theta)), int(np.argmin(theta))

    def inside(i: int, edge: float, up: bool) -> bool:
        gap = (edge - theta[i]) if up else (theta[i] - edge)
        return bool(gap + margin >= rho[i] and rho[i] <= 0.25 * max(gap, 0.0) + margin)

    w_sorted = np.sort(wanted)
    if which == "LA":
        return inside(hi, w_sorted[0], True)
    if which == "SA":
        return inside(lo, w_sorted[-1], False)
    if which == "LM":
        e = float(np.abs(wanted).min())
        return inside(hi, e, True) and inside(lo, -e, False)
    n_top, n_bot = wanted.size - wanted.size // 2, wanted.size // 2
    ok_top = inside(hi, w_sorted[::-1][:n_top].min(), True)
    return ok_top and (n_bot == 0 or inside(lo, w_sorted[:n_bot].max(), False))


def _dense(A: Any, k: int, which: str, vectors: bool) -> EigshResult:
    D = backends.to_numpy(A.to_dense()).astype(np.float64)
    w, V = np.linalg.eigh((D + D.T) / 2)
    idx = np.sort(_wanted(w, k, which))
    vecs = None
    if vectors:
        vecs = backends.from_numpy(V[:, idx], A.xp, A.device, A.dtype)
    return EigshResult(w[idx], vecs, np.zeros(idx.size), A.shape[0], True, 0, True)


def eigsh(A: Any, k: int = 6, *, which: str = "LA", tol: float = 1e-8, maxiter: int | None = None,
          ncv: int | None = None, v0: Any = None, seed: Any = None, return_eigenvectors: bool = True,
          dense: bool | str = "auto", verify: bool = True, check_symmetric: bool = False) -> EigshResult:
    """``k`` eigenpairs of a symmetric operator (thick-restart Lanczos with locking).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    k : int
        Number of eigenpairs, ``1 <= k < n`` (``k = n`` needs ``dense=True``).
    which : {"LA", "SA", "LM", "BE"}
        Largest algebraic, smallest algebraic, largest magnitude, or both ends
        (``k // 2`` from the bottom, the rest from the top), as in scipy.
    tol : float
        Relative residual tolerance (see the module docstring); 0 means machine eps.
    maxiter : int, optional
        Maximum number of restarts (default ``max(100, 10 n / ncv)``).
    ncv : int, optional
        Size of the active Lanczos basis, ``k < ncv <= n`` (default ``max(2k + 1, k + 30)``:
        a larger basis than ARPACK's ``max(2k + 1, 20)`` costs memory but saves matvecs).
    v0 : array, optional
        Start vector (default a seeded Gaussian probe).
    seed : int, numpy Generator or None
        Seed of the start vector and of the verification vectors.
    return_eigenvectors : bool
        Whether to return the eigenvectors.
    dense : {"auto", True, False}
        ``True`` computes all eigenpairs densely (``to_dense`` + ``numpy.linalg.eigh``);
        ``"auto"`` does so when ``ncv >= n``, where a Krylov method has no advantage.
    verify : bool
        Look for missed copies of repeated eigenvalues with a fresh random vector
        at the end (see the module docstring); ``result.verified`` tells whether the
        check settled. ``verify=False`` saves its matvecs and, like ARPACK, may then
        miss copies of repeated eigenvalues.
    check_symmetric : bool
        Run a cheap randomized symmetry test first (two extra matvecs).

    Returns
    -------
    EigshResult

    Raises
    ------
    ValueError
        For a non-square operator, ``k`` out of range, or a bad ``which``/``ncv``.
    NonFiniteError
        When a matvec returns NaN or Inf.
    """
    A, n = prepare(A, "eigsh", check_symmetric, seed)
    k = check_positive_int(k, "k")
    check_choice(which, "which", WHICH)
    if not isinstance(tol, numbers.Real) or tol < 0:
        raise ValueError(f"tol: expected a non-negative number, got {tol!r}")
    if dense not in ("auto", True, False):
        raise ValueError(f"dense: expected 'auto', True or False, got {dense!r}")
    if k > n or (k == n and dense is not True):
        raise ValueError(f"k: expected 1 <= k < n = {n}, got k = {k} (pass dense=True to compute all eigenpairs)")
    ncv = min(n, max(2 * k + 1, k + 30)) if ncv is None else check_positive_int(ncv, "ncv")
    if not k < ncv <= n and dense is not True:
        raise ValueError(f"ncv: expected k = {k} < ncv <= n = {n}, got {ncv}")
    if dense is True or (dense == "auto" and ncv >= n):
        return _dense(A, k, which, return_eigenvectors)
    maxiter = max(100, 10 * n // ncv) if maxiter is None else check_positive_int(maxiter, "maxiter")
    with backends.host_blas_single_thread(A.xp):
        return _ThickRestart(A, n, k, which, float(tol), maxiter, ncv, seed, verify).run(v0, return_eigenvectors)


class _ThickRestart:
    """State of one thick-restart run: locked rows ``B[:p]``, active rows after them."""

    def __init__(self, A: Any, n: int, k: int, which: str, tol: float, maxiter: int, ncv: int,
                 seed: Any, verify: bool) -> None:
        self.A, self.n, self.k, self.which, self.maxiter, self.ncv = A, n, k, which, maxiter, ncv
        self.seed, self.verify = seed, verify
        self.xp, self.rdt = A.xp, recurrence_dtype(A, "float64")
        self.eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
        self.tol = tol if tol > 0 else self.eps
        kw = {} if A.device is None else {"device": A.device}
        self.B = self.xp.zeros((min(n, k + ncv) + 1, n), dtype=self.rdt, **kw)
        self.p = 0
        self.locked_vals: list[float] = []
        self.locked_res: list[float] = []
        self.matvecs, self.anorm, self.tnorm, self.fresh, self.restarts = 0, 0.0, 0.0, 0, 0
        self.verified = False

    # ------------------------------------------------------------- helpers
    def _converged(self, theta: np.ndarray, rho: np.ndarray) -> np.ndarray:
        return rho <= np.maximum(self.tol * np.abs(theta), 100 * self.eps * self.anorm)

    def _fresh_vector(self, rows: int) -> Any:
        """A seeded random unit vector orthogonal to ``B[:rows]`` (deflation restart)."""
        self.fresh += 1
        v = start_vector(self.A, None, self.seed, self.rdt, "eigsh", index=self.fresh)
        if rows:
            v, _ = project_out(self.B, v, rows)
        return v / norm(self.xp, v)

    def _status(self, theta: np.ndarray, rho: np.ndarray, verifying: bool) -> tuple[np.ndarray, bool]:
        """Active indices to lock now, and whether the whole run is finished."""
        locked = np.asarray(self.locked_vals)
        allv = np.concatenate([locked, theta])
        want = _wanted(allv, self.k, self.which)
        act = want[want >= locked.size] - locked.size
        conv = act[self._converged(theta[act], rho[act])]
        if conv.size < act.size:
            return conv, False
        if not (self.verify and verifying):
            return conv, not self.verify
        if conv.size:  # a missed copy: lock it and check again with a fresh vector
            return conv, False
        if theta.size < min(5, self.ncv, self.n - self.p) and np.any(rho > 0):  # too few steps to judge
            return conv, False
        final = allv[want]
        margin = self.tol * max(np.abs(final).max(), self.eps * self.anorm)
        return conv, _clear(theta, rho, final, self.which, margin)

    # ----------------------------------------------------------------- run
    def _expand(self, q: Any, T: np.ndarray, l: int, verifying: bool) -> tuple:
        """Lanczos steps from active row ``l`` until a stop test fires; returns the Ritz data."""
        xp, A, p = self.xp, self.A, self.p
        m = min(self.ncv, self.n - p)
        self.B = backends.assign(self.B, p + l, q)
        for j in range(l, m):
            w = xp.astype(A.matvec(xp.astype(q, A.dtype)), self.rdt)
            self.matvecs += 1
            w, h = project_out(self.B, w, p + j + 1)
            hh = backends.to_numpy(h).astype(np.float64)[p:]
            beta = float(norm(xp, w))
            check_finite(np.append(hh, beta), "eigsh", self.matvecs - 1)
            T[: j + 1, j] = hh
            T[j, : j + 1] = hh
            self.tnorm = max(self.tnorm, float(np.abs(hh).sum()), beta)
            invariant = beta <= 100 * np.sqrt(self.n) * self.eps * self.tnorm
            size = j + 1
            if invariant or size == m or size - l >= 2:
                theta, S = np.linalg.eigh(T[:size, :size])
                self.anorm = max(self.anorm, float(np.abs(theta).max()))  # a lower bound of ||A||_2
                rho = 0.0 * theta if invariant else beta * np.abs(S[size - 1])
                lock, finished = self._status(theta, rho, verifying)
                if invariant or finished or size == m:
                    break
                if (lock.size if verifying else self._all_wanted_converged(theta, rho)):
                    break
            q = w / beta
            self.B = backends.assign(self.B, p + j + 1, q)
        return theta, S, rho, size, w, beta, invariant, lock, finished

    def run(self, v0: Any, vectors: bool) -> EigshResult:
        q = start_vector(self.A, v0, self.seed, self.rdt, "eigsh")
        T = np.zeros((self.ncv, self.ncv))
        l, verifying = 0, False
        while True:
            theta, S, rho, size, w, beta, invariant, lock, finished = self._expand(q, T, l, verifying)
            p = self.p
            Q = self.B[p: p + size, ...]
            Y = self._rows(S[:, lock], Q) if lock.size else None
            all_conv = self._all_wanted_converged(theta, rho)
            if finished:
                self._lock(Y, theta[lock], rho[lock])
                self.verified = verifying
                break
            self.restarts += 1
            if self.restarts > self.maxiter:
                self._lock(Y, theta[lock], rho[lock])
                warnings.warn(f"eigsh: no convergence after {self.maxiter} restarts ({self.matvecs} matvecs); "
                              "returning the current best pairs", ConvergenceWarning, stacklevel=3)
                return self._result(vectors, False, theta, rho, S, Q, lock)
            pool = np.setdiff1d(np.arange(size), lock)
            k_rem = max(self.k - len(self.locked_vals) - lock.size, 1)
            room = min(self.ncv, self.n - p - lock.size) - 1
            n_keep = max(min(k_rem + int((room - k_rem) * KEEP), room, pool.size), 0)
            if all_conv and (not verifying or lock.size):  # all wanted locked: look for missed copies
                n_keep, verifying = 0, True
            keep = pool[_wanted(theta[pool], n_keep, self.which)] if n_keep else np.zeros(0, int)
            K = self._rows(S[:, keep], Q) if keep.size else None
            self._lock(Y, theta[lock], rho[lock])
            l = int(keep.size)
            if self.p + l >= self.n:
                break
            if K is not None:
                self.B = backends.assign(self.B, (slice(self.p, self.p + l), Ellipsis), K)
            T = np.zeros((self.ncv, self.ncv))
            T[np.arange(l), np.arange(l)] = theta[keep]
            q = self._fresh_vector(self.p + l) if (invariant or l == 0) else w / beta
        return self._result(vectors, True)

    def _rows(self, coeffs: np.ndarray, Q: Any) -> Any:
        """``coeffs.T @ Q`` on the device: Ritz vectors as rows."""
        return self.xp.asarray(np.ascontiguousarray(coeffs.T), dtype=self.rdt, **self._dev()) @ Q

    def _all_wanted_converged(self, theta: np.ndarray, rho: np.ndarray) -> bool:
        locked = np.asarray(self.locked_vals)
        want = _wanted(np.concatenate([locked, theta]), self.k, self.which)
        act = want[want >= locked.size] - locked.size
        return bool(np.all(self._converged(theta[act], rho[act])))

    def _dev(self) -> dict:
        return {} if self.A.device is None else {"device": self.A.device}

    def _lock(self, Y: Any, vals: np.ndarray, res: np.ndarray) -> None:
        if Y is None:
            return
        c = int(vals.size)
        need = min(self.n, self.p + c + self.ncv) + 1
        if need > self.B.shape[0]:  # grow (verification may lock extra copies)
            extra = self.xp.zeros((need - self.B.shape[0], self.n), dtype=self.rdt, **self._dev())
            self.B = self.xp.concat([self.B, extra], axis=0)
        self.B = backends.assign(self.B, (slice(self.p, self.p + c), Ellipsis), Y)
        self.p += c
        self.locked_vals.extend(float(v) for v in vals)
        self.locked_res.extend(float(r) for r in res)

    def _result(self, vectors: bool, converged: bool, theta: Any = None, rho: Any = None, S: Any = None,
                Q: Any = None, skip: Any = None) -> EigshResult:
        vals = np.asarray(self.locked_vals)
        res = np.asarray(self.locked_res)
        rows = self.B[: self.p, ...]
        if theta is not None and theta.size:  # unconverged: fill with the best active Ritz pairs
            pool = np.setdiff1d(np.arange(theta.size), skip)
            vals = np.concatenate([vals, theta[pool]])
            res = np.concatenate([res, rho[pool]])
            Y = self._rows(S[:, pool], Q)
            rows = self.xp.concat([rows, Y], axis=0)
        idx = _wanted(vals, self.k, self.which)
        idx = idx[np.argsort(vals[idx], kind="stable")]
        vecs = None
        if vectors:
            sel = self.xp.asarray(idx, **self._dev())
            vecs = self.xp.astype(self.xp.take(rows, sel, axis=0).T, self.A.dtype)
        return EigshResult(vals[idx], vecs, res[idx], self.matvecs, converged, self.restarts, self.verified)
