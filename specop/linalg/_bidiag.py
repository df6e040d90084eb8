"""The thick-restart Golub-Kahan-Lanczos bidiagonalization behind :func:`specop.svds`.

The method, its restarts (Baglama & Reichel, SIAM J. Sci. Comput. 27, 2005, Sec. 2), its
convergence test and the check for missed copies of repeated singular values are described in
:mod:`specop.linalg.svds`; this module holds the run's state and steps.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._common import norm, recurrence_dtype
from specop.linalg._krylov_util import cgs2, dev, eps_of, finite_or_raise, random_unit, to_host, vector_in

__all__ = ["Bidiag"]

#: Fraction of the free basis room kept at a restart beyond the wanted triplets.
KEEP = 0.5


class Bidiag:
    """One thick-restart run on ``X`` (``A`` or ``A^T``): locked rows ``[:p]``, active rows after them."""

    def __init__(self, A: Any, k: int, which: str, tol: float, maxiter: int, ncv: int, seed: Any,
                 verify: bool) -> None:
        self.A, self.k, self.which, self.maxiter, self.ncv, self.seed = A, k, which, maxiter, ncv, seed
        self.verify = verify
        m, n = A.shape
        self.flip = m < n  # X = A^T: X p = A^T p
        self.M, self.N = (n, m) if self.flip else (m, n)
        self.xp, self.rdt = A.xp, recurrence_dtype(A, "float64")
        self.eps = eps_of(A.dtype)
        self.tol = tol if tol > 0 else self.eps
        rows = min(self.N + 1, -(-(min(self.N, k + ncv) + 1) // 8) * 8)  # few distinct shapes (see _bucket)
        self.P = self.xp.zeros((rows, self.N), dtype=self.rdt, **dev(A))
        self.Q = self.xp.zeros((rows, self.M), dtype=self.rdt, **dev(A))
        self.p = 0
        self.locked_s: list[float] = []
        self.locked_r: list[float] = []
        self.nx = self.nxt = self.restarts = self.fresh = 0
        self.anorm = self.tnorm = 0.0

    # ------------------------------------------------------------ products
    def _x(self, v: Any) -> Any:
        self.nx += 1
        op = self.A.rmatvec if self.flip else self.A.matvec
        return backends.astype(op(backends.astype(v, self.A.dtype, self.xp)), self.rdt, self.xp)

    def _xt(self, v: Any) -> Any:
        self.nxt += 1
        op = self.A.matvec if self.flip else self.A.rmatvec
        return backends.astype(op(backends.astype(v, self.A.dtype, self.xp)), self.rdt, self.xp)

    def _fresh(self, size: int, basis: Any, rows: int) -> Any:
        self.fresh += 1
        return random_unit(self.A, size, self.seed, self.rdt, self.fresh, basis, self._bucket(rows, basis))

    def _bucket(self, rows: int, basis: Any) -> int:
        """``rows`` rounded up to a multiple of 8 (within the buffer).

        Rows past the current ones are kept zero, so orthogonalizing against the extra rows
        changes nothing, while the number of distinct array shapes stays small (JAX compiles
        every primitive anew for each shape: about 0.2 s each).
        """
        if basis is None or rows == 0:
            return 0
        return min(-(-rows // 8) * 8, int(basis.shape[0]))

    def _invariance(self) -> float:
        """A norm below this is rounding noise: the Krylov space is invariant to working precision."""
        return 10 * math.sqrt(self.N) * self.eps * self.tnorm

    def _floor(self) -> float:
        """Smallest resolvable residual: rounding, and the locked triplets' residuals (they stay in every later one)."""
        return max(100 * self.eps * self.anorm, math.sqrt(sum(r * r for r in self.locked_r)))

    def _order(self, s: np.ndarray) -> np.ndarray:
        """Indices of ``s`` best first (largest for LM, smallest for SM)."""
        return np.argsort(-s if self.which == "LM" else s, kind="stable")

    # ---------------------------------------------------------------- steps
    def _expand(self, B: np.ndarray, l: int, verifying: bool) -> tuple:
        """Bidiagonalization steps from active column ``l`` (``P[p + l]`` set) until a test fires."""
        xp, p = self.xp, self.p
        m = min(self.ncv, self.N - p)
        for j in range(l, m):
            w = self._x(self.P[p + j, ...])
            w, h = cgs2(self.Q, w, self._bucket(p + j, self.Q))
            alpha_d = norm(xp, w)
            h_host = to_host(xp.concat([h, alpha_d[None]]) if h is not None else alpha_d[None])
            finite_or_raise(h_host, "svds", self.nx)
            alpha = float(h_host[-1])
            B[:j, j] = h_host[p:p + j]
            B[j, j] = alpha
            self.tnorm = max(self.tnorm, float(np.abs(h_host).max()))
            if alpha <= self._invariance():  # X p_j lies in span(Q): continue with a fresh left vector
                q = self._fresh(self.M, self.Q, p + j)
            else:
                q = w / alpha_d
            self.Q = backends.assign(self.Q, p + j, q)
            z = self._xt(q)
            z, _ = cgs2(self.P, z, self._bucket(p + j + 1, self.P))
            beta = float(to_host(norm(xp, z)))
            finite_or_raise([beta], "svds", self.nxt)
            self.tnorm = max(self.tnorm, beta)
            invariant = beta <= self._invariance()
            size = j + 1
            if not (invariant or size == m or (size - l) % 2 == 0):
                self.P = backends.assign(self.P, p + size, z / beta)
                continue
            U, s, Vt = np.linalg.svd(B[:size, :size])
            self.anorm = max(self.anorm, float(s[0]))
            rho = beta * np.abs(U[size - 1])
            done = self._status(s, rho, verifying, invariant, size == m)
            if not invariant or size < self.N - p:
                nxt = self._fresh(self.N, self.P, p + size) if invariant else z / beta
                self.P = backends.assign(self.P, p + size, nxt)
            if done is not None or size == m:
                return U, s, Vt, rho, size, invariant, done
        raise AssertionError("unreachable")  # pragma: no cover

    def _converged(self, s: np.ndarray, rho: np.ndarray) -> np.ndarray:
        return rho <= np.maximum(self.tol * s, self._floor())

    def _status(self, s: np.ndarray, rho: np.ndarray, verifying: bool, invariant: bool, full: bool) -> str | None:
        """``"converged"`` (main run: all wanted converged), ``"settled"``/``"missed"`` (check), or None."""
        order = self._order(s)
        if not verifying:
            want = order[: self.k]
            if want.size == self.k and self._converged(s[want], rho[want]).all():
                return "converged"
            return None
        best = order[0]
        edge = self._edge()
        margin = max(self.tol * edge, self._floor())
        if self._converged(s[best:best + 1], rho[best:best + 1])[0] and self._beyond(s[best], edge, margin):
            return "missed"
        if size_ok(s.size, invariant, full) and self._settled(s[best], rho[best], edge, margin):
            return "settled"
        return None

    def _edge(self) -> float:
        """The worst of the ``k`` best locked singular values (the wanted set's edge)."""
        vals = np.asarray(self.locked_s)
        return float(vals[self._order(vals)[self.k - 1]])

    def _beyond(self, theta: float, edge: float, margin: float) -> bool:
        return theta > edge + margin if self.which == "LM" else theta < edge - margin

    def _settled(self, theta: float, rho: float, edge: float, margin: float) -> bool:
        """The deflated extreme triplet stays inside the edge and has converged to within a quarter of its gap."""
        gap = (edge - theta) if self.which == "LM" else (theta - edge)
        return bool(gap + margin >= rho and rho <= 0.25 * max(gap, 0.0) + margin)

    # ------------------------------------------------------------------ run
    def run(self, v0: Any, vectors: bool | str) -> tuple:
        if v0 is None:
            q0 = self._fresh(self.N, None, 0)
        else:
            q0 = vector_in(self.A, v0, self.N, "v0", self.rdt)
            nv = float(to_host(norm(self.xp, q0)))
            if not (math.isfinite(nv) and nv > 0):
                raise ValueError(f"v0: expected a non-zero finite vector, got norm {nv}")
            q0 = q0 / nv
        self.P = backends.assign(self.P, 0, q0)
        B = np.zeros((self.ncv, self.ncv))
        l, verifying, converged, verified = 0, False, False, False
        while True:
            U, s, Vt, rho, size, invariant, done = self._expand(B, l, verifying)
            if done == "converged":
                self._lock(U, s, Vt, rho, size, self._order(s)[: self.k])
                converged = True
                if not self.verify or self.p >= self.N:
                    verified = self.p >= self.N
                    break
                verifying = True
                l, B = 0, np.zeros((self.ncv, self.ncv))
                self._restart_fresh(0)
                continue
            if done == "missed":
                self._lock(U, s, Vt, rho, size, self._order(s)[:1])
                if self.p >= self.N:
                    verified = True
                    break
                l, B = 0, np.zeros((self.ncv, self.ncv))
                self._restart_fresh(0)
                continue
            if done == "settled":
                verified = True
                break
            self.restarts += 1
            if self.restarts > self.maxiter:
                if not verifying:
                    warnings.warn(f"svds: no convergence after {self.maxiter} restarts ({self.nx} products with X, "
                                  f"{self.nxt} with X^T); largest residual / tolerance: "
                                  f"{self._worst(s, rho):.3g}; returning the current best triplets",
                                  ConvergenceWarning, stacklevel=3)
                    self._lock(U, s, Vt, rho, size, self._order(s)[: self.k])
                else:
                    warnings.warn(f"svds: the check for missed copies of repeated singular values did not settle "
                                  f"within {self.maxiter} restarts; the values are converged but a copy may be missing",
                                  ConvergenceWarning, stacklevel=3)
                break
            l = self._restart(B, U, s, Vt, size, invariant, verifying)
        return self._result(vectors, converged, verified)

    def _worst(self, s: np.ndarray, rho: np.ndarray) -> float:
        want = self._order(s)[: self.k]
        return float(np.max(rho[want] / np.maximum(self.tol * s[want], self._floor())))

    def _restart_fresh(self, l: int) -> None:
        """A fresh random start vector orthogonal to the locked (and ``l`` kept) rows."""
        v = self._fresh(self.N, self.P, self.p + l)
        self.P = backends.assign(self.P, self.p + l, v)

    def _restart(self, B: np.ndarray, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, size: int,
                 invariant: bool, verifying: bool) -> int:
        """Compress the active basis to the best Ritz triplets plus the residual direction."""
        p = self.p
        room = min(self.ncv, self.N - p) - 1
        want = 1 if verifying else self.k
        n_keep = max(min(want + int((room - want) * KEEP), room), 0)
        keep = self._order(s)[:n_keep]
        l = int(keep.size)
        residual = size < self.N - p and not invariant
        CP, CQ = self._frame(), self._frame()
        CP[p:p + l, p:p + size] = Vt[keep, :]
        CQ[p:p + l, p:p + size] = U[:, keep].T
        if residual:
            CP[p + l, p + size] = 1.0
        self._recombine(CP, CQ)
        B[:] = 0.0
        B[np.arange(l), np.arange(l)] = s[keep]
        if not residual:
            self._restart_fresh(l)
        return l

    def _frame(self) -> np.ndarray:
        """Coefficients rebuilding a buffer: the locked rows kept, the rest zero until filled."""
        C = np.zeros((self.P.shape[0], self.P.shape[0]))
        C[np.arange(self.p), np.arange(self.p)] = 1.0
        return C

    def _recombine(self, CP: np.ndarray, CQ: np.ndarray) -> None:
        """``P <- CP P``, ``Q <- CQ Q``: one fixed-shape product each (stale rows become zero)."""
        self.P = self._coeffs(CP) @ self.P
        self.Q = self._coeffs(CQ) @ self.Q

    def _coeffs(self, C: np.ndarray) -> Any:
        return self.xp.asarray(np.ascontiguousarray(C), dtype=self.rdt, **dev(self.A))

    def _lock(self, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, rho: np.ndarray, size: int,
              idx: np.ndarray) -> None:
        """Move the Ritz triplets ``idx`` to the locked rows (growing the buffers when needed)."""
        p, c = self.p, int(idx.size)
        need = min(self.N, p + c + self.ncv) + 1
        if need > self.P.shape[0]:
            self.P = self.xp.concat([self.P, self.xp.zeros((need - self.P.shape[0], self.N), dtype=self.rdt,
                                                           **dev(self.A))], axis=0)
            self.Q = self.xp.concat([self.Q, self.xp.zeros((need - self.Q.shape[0], self.M), dtype=self.rdt,
                                                           **dev(self.A))], axis=0)
        CP, CQ = self._frame(), self._frame()
        CP[p:p + c, p:p + size] = Vt[idx, :]
        CQ[p:p + c, p:p + size] = U[:, idx].T
        self._recombine(CP, CQ)
        self.p += c
        self.locked_s.extend(float(x) for x in s[idx])
        self.locked_r.extend(float(x) for x in rho[idx])

    def _result(self, vectors: bool | str, converged: bool, verified: bool) -> tuple:
        vals = np.asarray(self.locked_s)
        res = np.asarray(self.locked_r)
        idx = self._order(vals)[: self.k]
        idx = idx[np.argsort(vals[idx], kind="stable")]
        S = np.zeros((idx.size, self.P.shape[0]))
        S[np.arange(idx.size), idx] = 1.0
        sel = self._coeffs(S)
        right = left = None
        want_u = vectors in (True, "u")
        want_vh = vectors in (True, "vh")
        if want_u or want_vh:
            rows_p = self.xp.astype(sel @ self.P, self.A.dtype)
            rows_q = self.xp.astype(sel @ self.Q, self.A.dtype)
            # X = A: P holds right vectors (vh rows), Q left ones; X = A^T: the roles swap
            vh_rows, u_rows = (rows_q, rows_p) if self.flip else (rows_p, rows_q)
            right = vh_rows if want_vh else None
            left = u_rows.T if want_u else None
        nA, nAT = (self.nxt, self.nx) if self.flip else (self.nx, self.nxt)
        return left, vals[idx], right, res[idx], nA, nAT, converged, self.restarts, verified


def size_ok(size: int, invariant: bool, full: bool) -> bool:
    """Enough steps in the check to judge its extreme Ritz triplet (at least 3, or the whole space)."""
    return size >= 3 or invariant or full
