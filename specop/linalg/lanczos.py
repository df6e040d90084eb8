"""The symmetric Lanczos process with full, selective (partial) or no reorthogonalization.

Builds the tridiagonal ``T_m = Q_m^T A Q_m`` of a symmetric operator from one start
vector by the three-term recurrence (Lanczos 1950; Golub & Van Loan, *Matrix
Computations*, 4th ed., Alg. 10.1.1). The recurrence vectors and all scalars are
kept in ``recurrence_dtype`` (float64 by default) even for a float32 operator;
only the matvec itself runs in the operator's dtype.

Reorthogonalization:

* ``"full"``: every new vector is orthogonalized against the whole basis by two
  passes of classical Gram-Schmidt in matrix form (CGS2; Giraud, Langou, Rozloznik,
  "The loss of orthogonality in the Gram-Schmidt process", 2005).
* ``"selective"``: partial reorthogonalization (Simon, "The Lanczos algorithm with
  partial reorthogonalization", Math. Comp. 42, 1984): the omega recurrence
  estimates ``|q_j . q_k|`` and the basis is reorthogonalized only when the estimate
  passes ``sqrt(eps)``, which keeps the Ritz values as accurate as with full
  reorthogonalization at a fraction of the cost.
* ``"none"``: no basis is stored (unless asked for); the right choice for
  spectral densities, where Gauss quadrature stays accurate despite ghost Ritz
  values (Paige 1976; Meurant & Strakos, Acta Numerica 2006).

Breakdown (``beta_j <= sqrt(eps) ||T_j||``, ``eps`` of the operator's dtype) ends the
run: the Krylov space is invariant to that accuracy and ``T`` holds its spectrum.
The threshold is not ``O(eps)`` because in floating point the computed ``beta`` at
exhaustion of an ``m``-dimensional Krylov space grows with ``m`` (observed up to
``4e5 eps ||A||`` for ten distinct eigenvalues): the rounding of earlier steps
re-enters as components along other copies of repeated eigenvalues. On accelerators the scalars
are read back to the host only every ``SYNC_EVERY`` steps (without reorthogonalization)
so that the device is never stalled per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from specop import backends
from specop._validate import check_bool, check_seed
from specop.linalg._common import (
    REORTH,
    SYMMETRY_MODES,
    check_choice,
    check_finite,
    check_positive_int,
    check_v0,
    dot,
    ensure_symmetric,
    norm,
    prepare,
    start_vector,
)
from specop.linalg._common import (
    recurrence_dtype as resolve_rdtype,
)

__all__ = ["lanczos", "LanczosResult", "tridiagonal_eigh", "project_out"]

#: Steps between host reads of alpha/beta on an accelerator when no reorthogonalization needs them.
SYNC_EVERY = 16


@dataclass(frozen=True)
class LanczosResult:
    """Outcome of :func:`lanczos`.

    Attributes
    ----------
    alpha : numpy.ndarray, shape (m,)
        Diagonal of ``T`` (float64, host).
    beta : numpy.ndarray, shape (m,)
        ``beta[j]`` couples ``q_j`` and ``q_{j+1}``; ``beta[:-1]`` is the
        off-diagonal of ``T`` and ``beta[-1]`` the norm of the final residual
        (``A Q = Q T + beta[-1] q_m e_m^T``).
    basis : array of shape (n, m) or None
        The Lanczos vectors as columns (``return_basis=True`` only).
    breakdown : bool
        Whether the run stopped early on an invariant subspace.
    steps_done : int
        ``m``, the number of Lanczos vectors.
    matvecs : int
        Products with ``A`` spent.
    reorthogonalizations : int
        Steps at which the basis was reorthogonalized.
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: Any = field(default=None, repr=False)
    breakdown: bool = False
    steps_done: int = 0
    matvecs: int = 0
    reorthogonalizations: int = 0
    info: dict = field(default_factory=dict)

    def tridiagonal(self) -> np.ndarray:
        """The dense ``m x m`` tridiagonal ``T`` (float64)."""
        return np.diag(self.alpha) + np.diag(self.beta[:-1], 1) + np.diag(self.beta[:-1], -1)

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and eigenvectors of ``T`` in Krylov coordinates."""
        return tridiagonal_eigh(self.alpha, self.beta[:-1])


def tridiagonal_eigh(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of the symmetric tridiagonal ``(alpha, beta)`` (LAPACK stemr)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.size == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, np.asarray(beta, dtype=np.float64))


def project_out(B: Any, w: Any, rows: int) -> tuple[Any, Any]:
    """Orthogonalize ``w`` against rows ``0..rows-1`` of ``B`` by CGS2; returns ``(w, h)``."""
    Q = B[:rows, ...]
    h = Q @ w
    w = w - h @ Q
    h2 = Q @ w
    return w - h2 @ Q, h + h2


def lanczos(A: Any, v0: Any = None, *, steps: int, reorth: str = "full", seed: Any = None,
            recurrence_dtype: str | None = "float64", return_basis: bool = False,
            check_symmetric: bool | str = "auto") -> LanczosResult:
    """Run ``steps`` steps of the symmetric Lanczos process on ``A``.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator (anything :func:`specop.aslinearoperator` takes).
    v0 : array, optional
        Start vector on the operator's backend; default a seeded Gaussian probe.
    steps : int
        Number of Lanczos vectors ``m`` (at most ``n``; larger values are clipped).
    reorth : {"full", "selective", "none"}
        Reorthogonalization (see the module docstring).
    seed : int, numpy Generator or None
        Seed of the default start vector.
    recurrence_dtype : {"float64", "float32"} or None
        dtype of the recurrence vectors and scalars (None: the operator's).
    return_basis : bool
        Also return the ``n x m`` basis (always stored for full/selective).
    check_symmetric : {"auto", True, False}
        Symmetry test before any work (see :func:`specop.linalg._common.ensure_symmetric`):
        ``"auto"`` (default) refuses an operator with ``is_symmetric=False``, trusts one
        whose symmetry is known (dense and sparse matrices checked exactly, curvature
        operators, their sums, scalings and shifts: no products) and tests a mere claim
        (``FunctionOperator(symmetric=True)``, a scipy operator) with two products;
        ``True`` tests every operator; ``False`` uses the operator as is.

    Returns
    -------
    LanczosResult

    Raises
    ------
    NonFiniteError
        When a matvec returns NaN or Inf (the step is named).
    """
    A, n = prepare(A, "lanczos")
    steps = min(check_positive_int(steps, "steps"), n)
    check_choice(reorth, "reorth", REORTH)
    check_seed(seed)
    check_bool(return_basis, "return_basis")
    check_choice(check_symmetric, "check_symmetric", SYMMETRY_MODES)
    xp, rdt = A.xp, resolve_rdtype(A, recurrence_dtype)
    v0 = check_v0(A, v0, "lanczos")
    extra = ensure_symmetric(A, "lanczos", check_symmetric)
    v = start_vector(A, v0, seed, rdt, "lanczos")
    store = reorth != "none" or return_basis
    kw = {} if A.device is None else {"device": A.device}
    B = xp.zeros((steps, n), dtype=rdt, **kw) if store else None
    if store:
        B = backends.assign(B, 0, v)
    host = backends.is_host(xp, A.device)
    sync_every = 1 if (reorth == "selective" or host) else SYNC_EVERY
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    # orthogonality is lost at the rate of the matvec's rounding: the operator's eps, not the recurrence's
    omega = _Omega(steps, max(eps, float(np.finfo(backends.dtype_name(rdt)).eps))) if reorth == "selective" else None

    alphas: list[Any] = []
    betas: list[Any] = []
    alpha_h = np.empty(0)
    beta_h = np.empty(0)
    v_prev: Any = None
    b_prev: Any = None
    breakdown, reorths, anorm = False, 0, 0.0
    force_next = False
    work = backends.workspace(v)
    for j in range(steps):
        w = backends.astype(A.matvec(backends.astype(v, A.dtype, xp)), rdt, xp)
        if w is v:  # an operator may return its input (identity): never update it in place
            w = xp.asarray(w, copy=True)
        if v_prev is not None:
            w = backends.axpy(w, -b_prev, v_prev, work)
        a = dot(xp, w, v)
        w = backends.axpy(w, -a, v, work)
        if (reorth == "full" or force_next) and j + 1 < steps:
            w, _ = project_out(B, w, j + 1)
            reorths += 1
        b = norm(xp, w, host)
        if omega is not None and j + 1 < steps:
            # Simon's rule: reorthogonalize q_{j+1} and q_{j+2} once omega passes sqrt(eps)
            need = omega.step(j, float(a), float(b), alpha_h)
            if force_next:
                omega.reset(j)
                force_next = False
            elif need:
                w, _ = project_out(B, w, j + 1)
                b = norm(xp, w, host)
                reorths += 1
                omega.reset(j)
                force_next = True
        alphas.append(a)
        betas.append(b)
        if (j + 1) % sync_every == 0 or j + 1 == steps:
            lo = alpha_h.size
            new_a = backends.to_numpy(xp.stack(alphas[lo:])).astype(np.float64)
            new_b = backends.to_numpy(xp.stack(betas[lo:])).astype(np.float64)
            alpha_h, beta_h = np.concatenate([alpha_h, new_a]), np.concatenate([beta_h, new_b])
            stop = _first_breakdown(alpha_h, beta_h, lo, n, eps, anorm)
            end = alpha_h.size if stop is None else stop + 1
            check_finite(np.concatenate([alpha_h[lo:end], beta_h[lo:end]]), "lanczos", lo)
            anorm = max(anorm, float(np.max(np.abs(alpha_h[:end]) + beta_h[:end])))
            if stop is not None:
                alpha_h, beta_h, breakdown = alpha_h[: stop + 1], beta_h[: stop + 1], True
                break
        if j + 1 < steps:
            v_prev, b_prev = v, b
            v = backends.scale(w, b)
            if store:
                B = backends.assign(B, j + 1, v)
    m = alpha_h.size
    basis = B[:m, ...].T if (return_basis and B is not None) else None
    return LanczosResult(alpha=alpha_h, beta=beta_h, basis=basis, breakdown=breakdown, steps_done=m,
                         matvecs=len(alphas) + extra, reorthogonalizations=reorths)


def _first_breakdown(alpha: np.ndarray, beta: np.ndarray, lo: int, n: int, eps: float,
                     anorm: float) -> int | None:
    """Index of the first ``beta`` at or after ``lo`` that is numerically zero."""
    scale = np.maximum.accumulate(np.abs(alpha) + beta)
    scale = np.maximum(scale, anorm)
    tol = np.sqrt(eps) * scale
    hits = np.flatnonzero(beta[lo:] <= tol[lo:])
    if hits.size == 0:
        return None
    return lo + int(hits[0])


class _Omega:
    """Simon's omega recurrence: estimates of ``|q_{j+1} . q_k|`` for all ``k <= j``."""

    def __init__(self, m: int, eps: float) -> None:
        self.eps = eps
        self.prev = np.zeros(m + 1)  # omega_{j-1, k}
        self.cur = np.zeros(m + 1)  # omega_{j, k}
        self.cur[0] = 1.0
        self.beta = np.zeros(m + 1)
        self.threshold = np.sqrt(eps)

    def step(self, j: int, a: float, b: float, alpha: np.ndarray) -> bool:
        """Advance to ``omega_{j+1, .}``; True when reorthogonalization is needed."""
        al = np.append(alpha[:j], a)
        be = np.append(self.beta[:j], b)
        self.beta[j] = b
        if b == 0.0:
            return False
        nxt = np.zeros_like(self.cur)
        k = np.arange(j)
        if j > 0:
            up = be[k] * self.cur[k + 1]
            mid = (al[k] - al[j]) * self.cur[k]
            low = np.where(k > 0, be[k - 1] * self.cur[np.maximum(k - 1, 0)], 0.0)
            prev = be[j - 1] * self.prev[k]
            noise = self.eps * (be[k] + b) * 0.3
            raw = up + mid + low - prev
            nxt[k] = (raw + np.sign(raw) * noise) / b
        nxt[j] = self.eps * np.sqrt(len(self.cur))
        nxt[j + 1] = 1.0
        self.prev, self.cur = self.cur, nxt
        return bool(np.max(np.abs(nxt[: j + 1])) > self.threshold)

    def reset(self, j: int) -> None:
        """After reorthogonalizing ``q_{j+1}``: its overlaps are back at rounding level."""
        self.cur[: j + 1] = self.eps
