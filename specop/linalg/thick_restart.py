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
wanted set (see ``specop.linalg._which.settled``); a copy it finds instead is
converged and locked and the check is repeated. The check restarts like the main
iteration until it settles (within ``maxiter`` restarts of its own); it costs few matvecs where the
wanted set is separated from the rest of the spectrum and more where it borders a
dense cluster (about 10% more on the 30^3 grid Laplacian, whose top eigenvalues are
triple).
Convergence is checked after every step (Ritz values of the small projected
matrix), not only at restarts, so no matvec is wasted once the wanted pairs have
converged; only while the nearest unconverged wanted pair is still ``10^s`` times
its tolerance are the next ``s`` tests (at most 3) left out, which is seen only as a
late test, never as an early one (``specop.linalg._locking.skipped_tests``: on 96
random problems it removes 56% of the small eigh calls for 0.02% more matvecs).

Which Ritz pairs count as converged (every reported pair meets ``tol`` with its true residual,
or the result says ``converged=False``), which of them may be locked early, and how many Ritz
vectors a restart keeps are the rules of ``specop.linalg._locking``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop._validate import check_bool, check_seed, check_tolerance, fail
from specop.linalg._common import (
    SYMMETRY_MODES,
    check_choice,
    check_finite,
    check_positive_int,
    ensure_symmetric,
    host_norms,
    prepare,
    recurrence_dtype,
    start_vector,
)
from specop.linalg._eigsh_result import EigshResult, _dense
from specop.linalg._krylov import (
    RecurrenceView,
    pick_rows,
    project_out,
    project_step,
    put_row,
    put_rows,
    rows_of,
    safe_norm,
)
from specop.linalg._krylov_util import dev
from specop.linalg._locking import Acceptance, extra_kept, skipped_tests
from specop.linalg._warm import warm_start
from specop.linalg._which import kept, wanted

__all__ = ["eigsh", "EigshResult"]

WHICH = ("LA", "SA", "LM", "BE", "SM")


def eigsh(A: Any, k: int = 6, *, which: str = "LA", tol: float = 1e-8, maxiter: int | None = None,
          ncv: int | None = None, v0: Any = None, seed: Any = None, return_eigenvectors: bool = True,
          dense: bool | str = "auto", verify: bool = True, check_symmetric: bool | str = "auto") -> EigshResult:
    """``k`` eigenpairs of a symmetric operator (thick-restart Lanczos with locking).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    k : int
        Number of eigenpairs, ``1 <= k < n`` (``k = n`` needs ``dense=True``).
    which : {"LA", "SA", "LM", "BE", "SM"}
        Largest algebraic, smallest algebraic, largest magnitude, both ends
        (``k // 2`` from the bottom, the rest from the top), or smallest magnitude, as in scipy.
        "SM" wants interior eigenvalues of an indefinite ``A``: Lanczos converges to them slowly
        (as ARPACK's regular mode does); shift-invert (``specop.sparse.linalg.eigsh(A, sigma=0)``)
        is usually far cheaper, and the multiplicity check cannot see missed interior copies.
    tol : float
        Relative residual tolerance (see the module docstring), finite and ``>= 0``; 0 means
        machine eps.
    maxiter : int, optional
        Maximum number of restarts (default ``max(100, 10 n / ncv)``) of the iteration, and
        as many again for the multiplicity check (``verify``). A run that hits it warns
        (:class:`specop.ConvergenceWarning`) and returns the best pairs: ``converged`` says
        whether each of them meets ``tol`` all the same, ``verified`` is False.
    ncv : int, optional
        Size of the active Lanczos basis, ``k < ncv <= n`` (default ``max(2k + 1, k + 30)``:
        a larger basis than ARPACK's ``max(2k + 1, 20)`` costs memory but saves matvecs).
    v0 : array or EigshResult, optional
        Start vector (default a seeded Gaussian probe); or a warm start from every vector of a
        previous result of an operator of the same size, backend and dtype (``v0=previous``),
        or of an ``(n, j)`` block: the sum of its unit-norm columns (see ``specop.linalg._warm``).
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
    check_symmetric : {"auto", True, False}
        Symmetry test before any work (see :func:`specop.linalg._common.ensure_symmetric`):
        ``"auto"`` (default) refuses an operator with ``is_symmetric=False``, trusts one
        whose symmetry is known (dense and sparse matrices checked exactly, curvature
        operators, their sums, scalings and shifts: no products) and tests a mere claim
        (``FunctionOperator(symmetric=True)``, a scipy operator) with two products;
        ``True`` tests every operator; ``False`` uses the operator as is.
        The dense path checks the whole matrix of a claim instead (no products beyond its ``n``).

    Returns
    -------
    EigshResult

    Raises
    ------
    ValueError
        For a non-square operator or any bad argument (``k`` out of range, a bad
        ``which``/``ncv``/``tol``/``maxiter``, a ``v0`` that is not a finite non-zero vector of
        shape ``(n,)``), on the dense path too.
    NonFiniteError
        When a matvec returns NaN or Inf.
    """
    # every argument is checked before a path is chosen: the dense path refuses what the Krylov path does
    A, n = prepare(A, "eigsh")
    k = check_positive_int(k, "k")
    check_choice(which, "which", WHICH)
    tol = check_tolerance(tol)
    check_choice(dense, "dense", ("auto", True, False))
    check_seed(seed)
    check_bool(return_eigenvectors, "return_eigenvectors")
    check_bool(verify, "verify")
    check_choice(check_symmetric, "check_symmetric", SYMMETRY_MODES)
    if k > n or (k == n and dense is not True):
        raise fail("k", f"1 <= k < n = {n} (pass dense=True to compute all n eigenpairs)", k)
    ncv = min(n, max(2 * k + 1, k + 30)) if ncv is None else check_positive_int(ncv, "ncv")
    if not k < ncv <= n and dense is not True:
        raise fail("ncv", f"k = {k} < ncv <= n = {n}", ncv)
    maxiter = max(100, 10 * n // ncv) if maxiter is None else check_positive_int(maxiter, "maxiter")
    v0 = warm_start(A, v0, "eigsh")
    if dense is True or (dense == "auto" and ncv >= n):
        # the dense path looks at the whole matrix: the flag is refused as on the Krylov path, a claim
        # is checked exactly instead of by two random products; an operator symmetric by construction
        # (a curvature operator, an InverseOperator whose inner solves are accurate to their rtol only)
        # is trusted as on the Krylov path, unless check_symmetric=True asks for the test
        ensure_symmetric(A, "eigsh", check_symmetric, products=False)
        whole = check_symmetric is True or (check_symmetric == "auto" and not A.symmetry_known)
        return _dense(A, k, which, return_eigenvectors, whole)
    extra = ensure_symmetric(A, "eigsh", check_symmetric)
    with backends.host_blas_single_thread(A.xp):
        res = _ThickRestart(A, n, k, which, float(tol), maxiter, ncv, seed, verify).run(v0, return_eigenvectors)
    return dataclasses.replace(res, matvecs=res.matvecs + extra) if extra else res


@dataclass(frozen=True)
class _Ritz:
    """Where :meth:`_ThickRestart._expand` stopped: Ritz pairs of the active basis and the stop tests."""

    theta: np.ndarray  # Ritz values (ascending) of T[:size, :size]
    S: np.ndarray  # its eigenvectors
    rho: np.ndarray  # their residual norms (the part along the locked rows included)
    size: int  # active basis size
    w: Any  # the residual direction A q_m - Q h (device) and its norm beta
    beta: float
    invariant: bool  # beta at rounding level: the Krylov space is invariant
    lock: np.ndarray  # active indices to lock now
    finished: bool
    all_conv: bool  # every wanted pair converged


class _ThickRestart(Acceptance):
    """State of one thick-restart run: locked rows ``B[:p]``, active rows after them."""

    def __init__(self, A: Any, n: int, k: int, which: str, tol: float, maxiter: int, ncv: int,
                 seed: Any, verify: bool) -> None:
        self.A, self.n, self.k, self.which, self.maxiter, self.ncv = A, n, k, which, maxiter, ncv
        self.seed, self.verify = seed, verify
        self.xp, self.rdt = A.xp, recurrence_dtype(A, "float64")
        self.host = backends.is_host(A.xp, A.device)
        self.fixed = backends.compiles_per_shape(A.xp)  # JAX: fixed-shape kernels, rows traced
        self.eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
        self.tol = tol if tol > 0 else self.eps
        self.B = self.xp.zeros((min(n, k + ncv) + 1, n), dtype=self.rdt, **dev(A))
        self.p = 0
        self.locked_vals: list[float] = []
        self.locked_res: list[float] = []
        self.C = np.zeros((0, ncv))  # coupling L^T A Q of the locked rows L to the active rows Q
        self.Av = RecurrenceView(A, self.rdt)  # A in float64: w = Av @ q
        self.anorm, self.tnorm, self.fresh, self.restarts = 0.0, 0.0, 0, 0
        self.verified = False
        self.check_restarts = 0  # restarts of the verification run (a budget of maxiter of its own)
        self.ends_settled = (True, True)  # the verification's ends (top, bottom) at the last check

    def _fresh_vector(self, rows: int) -> Any:
        """A seeded random unit vector orthogonal to ``B[:rows]`` (deflation restart)."""
        self.fresh += 1
        v = start_vector(self.A, None, self.seed, self.rdt, "eigsh", index=self.fresh)
        if rows and self.fixed:  # the program of the Lanczos steps
            v, hb = project_step(self.xp, self.B, v, rows)
            return v / float(backends.to_numpy(hb)[-1])
        if rows:
            v, _ = project_out(self.B, v, rows)
        return v / safe_norm(self.xp, v, self.host)

    # ----------------------------------------------------------------- run
    @property
    def matvecs(self) -> int:
        return self.Av.products

    def _expand(self, q: Any, T: np.ndarray, l: int, verifying: bool) -> _Ritz:
        """Lanczos steps from active row ``l`` until a stop test fires; returns the Ritz data."""
        p = self.p
        m = min(self.ncv, self.n - p)
        self.B = put_row(self.xp, self.B, p + l, q, 1.0)[0] if self.fixed else backends.assign(self.B, p + l, q)
        skip = 0  # convergence tests left out while the wanted pairs are far from converged (skipped_tests)
        for j in range(l, m):
            # Krylov-Schur step: w = A q_j orthogonalized against every row (locked and active) by CGS2;
            # the coefficients are column j of the projected matrix (and of the coupling C to locked rows)
            if self.fixed:  # one program for the projection and the norm, one host read
                w, hb = project_step(self.xp, self.B, self.Av @ q, p + j + 1)
                hb = backends.to_numpy(hb).astype(np.float64)
                hfull, beta = hb[: p + j + 1], float(hb[-1])
            else:
                w, h = project_out(self.B, self.Av @ q, p + j + 1, masked=False)
                hfull = backends.to_numpy(h).astype(np.float64)
                beta = float(safe_norm(self.xp, w, self.host))
            hh, self.C[:, j] = hfull[p:], hfull[:p]
            if not (math.isfinite(beta) and np.isfinite(hfull).all()):
                check_finite(np.append(hfull, beta), "eigsh", self.matvecs - 1)
            T[: j + 1, j] = hh
            T[j, : j + 1] = hh
            self.tnorm = max(self.tnorm, float(np.abs(hh).sum()), beta)
            invariant = beta <= self._invariance()
            size = j + 1
            if skip and not (invariant or size == m):  # (skip > 0 only after a test: size - l >= 2)
                skip -= 1
            elif invariant or size == m or size - l >= 2:
                theta, S = np.linalg.eigh(T[:size, :size])
                self.anorm = max(self.anorm, float(np.abs(theta).max()))  # a lower bound of ||A||_2
                rho = beta * np.abs(S[size - 1])
                if p:  # the part of A y - theta y along the locked vectors (see Acceptance._affordable)
                    rho = np.hypot(rho, host_norms(self.C[:, :size] @ S))
                lock, finished, all_conv = self._status(theta, rho, verifying, invariant)
                skip = 0 if verifying else skipped_tests(self.far)
                if invariant or finished or size == m:
                    break
                if (lock.size if verifying else all_conv):
                    break
            if self.fixed:
                self.B, q = put_row(self.xp, self.B, p + j + 1, w, beta)
            else:
                q = w / beta
                self.B = backends.assign(self.B, p + j + 1, q)
        return _Ritz(theta, S, rho, size, w, beta, invariant, lock, finished, all_conv)

    def run(self, v0: Any, vectors: bool) -> EigshResult:
        q = start_vector(self.A, v0, self.seed, self.rdt, "eigsh")
        T = np.zeros((self.ncv, self.ncv))
        l, verifying = 0, False
        while True:
            r = self._expand(q, T, l, verifying)
            theta, S, rho, size, lock, finished, all_conv = r.theta, r.S, r.rho, r.size, r.lock, r.finished, r.all_conv
            p = self.p
            Q = None if self.fixed else self.B[p: p + size, ...]  # fixed shapes: _rows reads B itself
            Y = self._rows(S[:, lock], Q) if lock.size else None
            if finished:
                self._lock(Y, theta[lock], rho[lock])
                self.verified = verifying
                break
            self.restarts += 1
            self.check_restarts += verifying
            if (self.check_restarts if verifying else self.restarts - self.check_restarts) > self.maxiter:
                pool = np.setdiff1d(np.arange(size), lock)  # the best active pairs fill up the result;
                active = (theta[pool], rho[pool], self._rows(S[:, pool], Q))  # before _lock
                self._lock(Y, theta[lock], rho[lock])
                res = self._result(vectors, None, active)
                what = "the multiplicity check did not settle" if verifying else "no convergence"
                warnings.warn(f"eigsh: {what} after {self.maxiter} restarts ({self.matvecs} matvecs); returning "
                              f"the current best pairs (converged={res.converged}, verified=False)",
                              ConvergenceWarning, stacklevel=3)
                return res
            pool = np.setdiff1d(np.arange(size), lock)
            k_rem = max(self.k - len(self.locked_vals) - lock.size, 1)
            room = min(self.ncv, self.n - p - lock.size) - 1
            n_keep = max(min(k_rem + extra_kept(room - k_rem), room, pool.size), 0)
            if verifying and self.which in ("LM", "BE") and n_keep < 2 <= min(room, pool.size):
                n_keep = 2  # the check settles both ends: keep a Ritz vector of each (ncv = 3)
            if all_conv and (not verifying or lock.size):  # all wanted locked: look for missed copies
                n_keep, verifying = 0, True
            # ends_settled is (True, True) outside the verification run (set by _status)
            keep = pool[kept(theta[pool], n_keep, self.which, self.k, self.ends_settled)] if n_keep \
                else np.zeros(0, int)
            K = self._rows(S[:, keep], Q) if keep.size else None
            self._lock(Y, theta[lock], rho[lock])
            l = int(keep.size)
            C = np.zeros((self.p, self.ncv))  # kept rows: C S_keep; new locked rows: S_lock^T T S_keep = 0
            C[:p, :l] = self.C[:, :size] @ S[:, keep]
            self.C = C
            if self.p + l >= self.n:
                break
            if K is not None:
                self._put(K, l)
            T = np.zeros((self.ncv, self.ncv))
            T[np.arange(l), np.arange(l)] = theta[keep]
            q = self._fresh_vector(self.p + l) if (r.invariant or l == 0) else r.w / r.beta
        return self._result(vectors, True)

    def _rows(self, coeffs: np.ndarray, Q: Any) -> Any:
        """``coeffs.T @ Q`` on the device: Ritz vectors as rows.

        With fixed shapes (``Q`` None) the active rows ``B[p:]`` are combined with the coefficients
        padded to ``B``'s height: the rows past ``coeffs.shape[1]`` are zero (see :meth:`_put`).
        """
        if Q is not None:
            return self.xp.asarray(np.ascontiguousarray(coeffs.T), dtype=self.rdt, **dev(self.A)) @ Q
        C = np.zeros((self.B.shape[0],) * 2)
        C[: coeffs.shape[1], self.p: self.p + coeffs.shape[0]] = coeffs.T
        return rows_of(self.xp, C.astype(backends.dtype_name(self.rdt)), self.B)  # a host argument: no compile

    def _put(self, Y: Any, c: int) -> None:
        """Rows ``p .. p + c - 1`` of ``B`` set to the first ``c`` rows of ``Y``."""
        if self.fixed:
            self.B = put_rows(self.xp, self.B, Y, self.p, c)
        else:
            self.B = backends.assign(self.B, (slice(self.p, self.p + c), Ellipsis), Y)

    def _lock(self, Y: Any, vals: np.ndarray, res: np.ndarray) -> None:
        if Y is None:
            return
        c = int(vals.size)
        need = min(self.n, self.p + c + self.ncv) + 1
        if need > self.B.shape[0]:  # grow (verification may lock extra copies)
            extra = self.xp.zeros((need - self.B.shape[0], self.n), dtype=self.rdt, **dev(self.A))
            self.B = self.xp.concat([self.B, extra], axis=0)
        self._put(Y, c)
        self.p += c
        self.locked_vals.extend(float(v) for v in vals)
        self.locked_res.extend(float(r) for r in res)

    def _result(self, vectors: bool, converged: bool | None,
                active: tuple[np.ndarray, np.ndarray, Any] | None = None) -> EigshResult:
        """The ``k`` wanted pairs among the locked (and the ``active`` (values, residuals, rows)) ones;
        ``converged`` None: whether every one of them meets the tolerance."""
        vals = np.asarray(self.locked_vals)
        res = np.asarray(self.locked_res)
        rows = None if self.fixed else self.B[: self.p, ...]
        if active is not None and active[0].size:  # unconverged: add the best active pairs
            vals, res = np.concatenate([vals, active[0]]), np.concatenate([res, active[1]])
            if not self.fixed:  # (fixed shapes: pick_rows reads the padded active rows after B's below)
                rows = self.xp.concat([rows, active[2]], axis=0)
        idx = wanted(vals, self.k, self.which)
        idx = idx[np.argsort(vals[idx], kind="stable")]
        if converged is None:
            converged = bool(np.all(self._converged(vals[idx], res[idx])))
        if idx.size < self.k:  # never "converged" with fewer than k pairs
            converged = False
        vecs = None
        if vectors and self.fixed:  # locked row i is row i of B, active row j row B.shape[0] + j of the extra
            extra = active[2] if active is not None and active[0].size else self.B
            sel = np.where(idx < self.p, idx, idx - self.p + self.B.shape[0])
            vecs = pick_rows(self.xp, self.B, extra, sel, dtype=self.A.dtype)
        elif vectors:
            sel = self.xp.asarray(idx, **dev(self.A))
            vecs = self.xp.astype(self.xp.take(rows, sel, axis=0).T, self.A.dtype)
        return EigshResult(vals[idx], vecs, res[idx], self.matvecs, converged, self.restarts, self.verified)
