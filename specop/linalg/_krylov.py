"""The Lanczos core shared by lanczos, SLQ, thick-restart eigsh and MINRES (backend-free).

Four small pieces, so that each algorithm reads like its paper:

* :class:`RecurrenceView`: the operator seen in the recurrence dtype (float64 by default);
  ``A @ q`` casts ``q`` to the operator's dtype, applies it (``matvec`` for a vector,
  ``matmat`` for a block of columns) and casts the product back, so the matvec alone runs
  in the operator's dtype.
* :func:`three_term`: the Lanczos step ``w <- A q_j - beta_{j-1} q_{j-1}``, ``alpha_j = w . q_j``,
  ``w <- w - alpha_j q_j`` (Paige's ordering, Golub & Van Loan, *Matrix Computations*, 4th ed.,
  Alg. 10.1.1), for one vector (in place where the backend allows) or for independent columns;
  :func:`safe_norm` gives ``beta_j = ||w||`` free of overflow and underflow at every scale, and
  :func:`normalize` the next vector ``q_{j+1} = w / beta_j``.
* Reorthogonalization policies (:func:`reorth_policy`): none; full (two passes of classical
  Gram-Schmidt against the stored basis, CGS2; Giraud, Langou & Rozloznik, 2005); selective
  (partial reorthogonalization, Simon, Math. Comp. 42, 1984: the omega recurrence estimates
  ``|q_{j+1} . q_k|`` and the basis is reorthogonalized, for two consecutive vectors, only when
  the estimate passes ``sqrt(eps)``).
* :class:`HostTridiagonal`: the host copy of ``(alpha, beta)``, read back from the device every
  ``every`` steps only (no host synchronisation per step on accelerators), with the NaN/Inf check
  naming the step and the breakdown test :func:`first_breakdown`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import check_finite, column_norms, device_norm, norm
from specop.linalg._krylov_util import _cgs2_masked
from specop.operators.base import LinearOperator

__all__ = ["RecurrenceView", "three_term", "three_term_unnormalized", "safe_norm", "normalize", "project_out",
           "first_breakdown", "reorth_policy",
           "project_step", "lanczos_step", "pick_rows", "put_row", "put_rows", "rows_of",
           "NoReorth", "FullReorth", "SelectiveReorth", "HostTridiagonal"]


class RecurrenceView:
    """``A`` seen in the recurrence dtype ``dtype``: ``A @ q`` for a vector or a block of columns.

    ``products`` counts the calls (one matvec or one matmat each). An operator that returns its
    input (the identity) gets a copy, so the caller may update the product in place.

    ``lean`` (the solvers' blocks, whose shape, backend and device are right by construction):
    after the first product, checked by ``A.matmat``, blocks go to ``A._matmat`` without the
    per-call input checks (an operator that overrides ``matmat`` itself keeps it).
    """

    def __init__(self, A: Any, dtype: Any, lean: bool = False) -> None:
        self.A, self.dtype, self.xp = A, dtype, A.xp
        self.products = 0
        self._lean = lean and type(A).matmat is LinearOperator.matmat

    def __matmul__(self, q: Any) -> Any:
        xp, A = self.xp, self.A
        x = backends.astype(q, A.dtype, xp)
        if q.ndim == 1:
            w = A.matvec(x)
        else:
            w = A._matmat(x) if self._lean and self.products and q.shape[1] else A.matmat(x)
        w = backends.astype(w, self.dtype, xp)
        self.products += 1
        return xp.asarray(w, copy=True) if w is q else w


def three_term(xp: Any, w: Any, q: Any, q_prev: Any, b_prev: Any, work: Any = None) -> tuple[Any, Any]:
    """``(w - b_prev q_prev - alpha q, alpha)`` with ``alpha = (w - b_prev q_prev) . q``.

    ``w = A q``; ``q_prev`` None at the first step. A vector is updated in place where the backend
    allows (``work``: see :func:`specop.backends.workspace`); for columns ``(n, b)`` every scalar
    is a ``(b,)`` array and each column runs its own recurrence.
    """
    if w.ndim == 1:
        if q_prev is not None:
            w = backends.axpy(w, -b_prev, q_prev, work)
        a = backends.vdot(w, q)
        return backends.axpy(w, -a, q, work), a
    if q_prev is not None:
        w = w - b_prev * q_prev
    a = xp.sum(w * q, axis=0)
    return w - a * q, a


def three_term_unnormalized(xp: Any, w: Any, q: Any, r_prev: Any, c_prev: Any, r: Any, beta: Any,
                            live: Any) -> tuple[Any, Any]:
    """The step of :func:`three_term` in Paige & Saunders' preconditioned form (1975), for columns.

    The recurrence keeps unnormalized vectors ``r_k`` with ``z_k = M r_k``, ``beta_k = sqrt(r_k . z_k)``
    and ``q_k = z_k / beta_k``: ``w = A q_k - c_prev r_{k-1}`` (``c_prev = beta_k / beta_{k-1}``;
    ``r_prev`` None at the first step), ``alpha_k = q_k . w``, and ``w - (alpha_k / beta_k) r_k``
    (coefficient 0 in columns not ``live``). Without a preconditioner it is :func:`three_term`
    scaled by ``beta_k``.
    """
    if r_prev is not None:
        w = w - c_prev * r_prev
    a = xp.sum(q * w, axis=0)
    return w - xp.where(live, a / xp.where(live, beta, 1.0), 0.0) * r, a


def safe_norm(xp: Any, w: Any, host: bool) -> Any:
    """``||w||`` of a vector (0-d) or of each column (``(b,)``), exact at every scale (see ``_common.norm``)."""
    return norm(xp, w, host) if w.ndim == 1 else column_norms(xp, w, host)


def normalize(xp: Any, w: Any, b: Any) -> Any:
    """``w / b``: a vector in place; columns with ``b = 0`` (a breakdown, cut afterwards) are left as they are.

    ``|w_i| <= b``, so ``w / b`` is finite for any ``b > 0``.
    """
    if w.ndim == 1:
        return backends.scale(w, b)
    return w / xp.where(b > 0, b, xp.ones_like(b))


def project_out(B: Any, w: Any, rows: int, masked: bool | None = None) -> tuple[Any, Any]:
    """Orthogonalize ``w`` against rows ``0..rows-1`` of ``B`` by CGS2; returns ``(w, h)``.

    Where the backend compiles per shape (JAX) the whole ``B`` is used with the rows from ``rows``
    on masked out (one program per shape of ``B``; ``rows`` is traced), and ``h`` has one entry
    per row of ``B`` (zero past ``rows``). ``masked`` (default: whether the backend compiles per
    shape) chooses the form without looking up ``B``'s namespace.
    """
    if masked is None:
        masked = backends.compiles_per_shape(backends.namespace_of(B))
    if masked:
        return _cgs2_masked(backends.namespace_of(B), B, w, rows)
    Q = B[:rows, ...]
    h = Q @ w
    w = w - h @ Q
    h2 = Q @ w
    return w - h2 @ Q, h + h2


@backends.kernel
def project_step(xp: Any, B: Any, w: Any, rows: Any) -> tuple[Any, Any]:
    """:func:`project_out` of the whole ``B`` (rows ``>= rows`` masked) and the norm, for compiling backends.

    Returns ``(w, hb)``: ``hb[:-1]`` the CGS2 coefficients (one per row of ``B``, zero past ``rows``)
    and ``hb[-1] = ||w||`` (:func:`specop.linalg._common.device_norm`): one host read per step.
    """
    w, h = _cgs2_masked(xp, B, w, rows)
    return w, xp.concat([h, xp.reshape(device_norm(xp, w), (1,))])


@backends.kernel
def lanczos_step(xp: Any, w: Any, q: Any, q_prev: Any, b_prev: Any) -> tuple[Any, Any, Any]:
    """One unreorthogonalized Lanczos step after the product ``w = A q``, for compiling backends.

    :func:`three_term`, ``beta = ||w||`` (:func:`specop.linalg._common.device_norm`) and the next vector
    ``w / beta`` (``w`` itself at ``beta = 0``, a breakdown cut afterwards): ``(q_next, alpha, beta)``, one
    program per shape (``q_prev``, ``b_prev`` None at the first step: a second program).
    """
    w, a = three_term(xp, w, q, q_prev, b_prev)
    b = device_norm(xp, w)
    return w / xp.where(b > 0, b, xp.ones_like(b)), a, b


@backends.kernel
def put_row(xp: Any, B: Any, i: Any, w: Any, beta: Any) -> tuple[Any, Any]:
    """``(B with row i = w / beta, w / beta)`` (``i`` traced: one program per shape of ``B``)."""
    q = w / beta
    return backends.assign(B, (i, Ellipsis), q), q


@backends.kernel
def put_rows(xp: Any, B: Any, Y: Any, start: Any, count: Any) -> Any:
    """``B`` with rows ``start .. start + count - 1`` replaced by rows ``0 .. count - 1`` of ``Y`` (fixed shapes)."""
    i = xp.arange(B.shape[0])
    src = xp.take(Y, xp.clip(i - start, 0, Y.shape[0] - 1), axis=0)
    mask = (i >= start) & (i < start + count)
    return xp.where(mask[:, None], src, B)


@backends.kernel
def rows_of(xp: Any, C: Any, B: Any) -> Any:
    """``C @ B``: combinations of the rows of ``B`` (``C`` padded to a fixed shape by the caller)."""
    return C @ B


@backends.kernel(static=("dtype",))
def pick_rows(xp: Any, B: Any, extra: Any, sel: Any, dtype: Any) -> Any:
    """Rows ``sel`` of ``B`` stacked on ``extra``, as columns in ``dtype`` (the eigenvectors of a result)."""
    return xp.astype(xp.take(xp.concat([B, extra], axis=0), sel, axis=0).T, dtype)


def first_breakdown(alpha: np.ndarray, beta: np.ndarray, lo: int, eps: float, anorm: float) -> int | None:
    """Index of the first ``beta`` at or after ``lo`` that is numerically zero.

    ``beta_j <= sqrt(eps) max(||T_j||, anorm)`` with ``||T_j||`` estimated by the running maximum
    of ``|alpha_i| + beta_i`` (see the module docstring of :mod:`specop.linalg.lanczos`).
    """
    scale = np.maximum.accumulate(np.abs(alpha) + beta)
    scale = np.maximum(scale, anorm)
    tol = np.sqrt(eps) * scale
    hits = np.flatnonzero(beta[lo:] <= tol[lo:])
    if hits.size == 0:
        return None
    return lo + int(hits[0])


Measure = Callable[[Any], Any]


class NoReorth:
    """No reorthogonalization: no basis needed (Gauss quadrature stays accurate, Paige 1976)."""

    stores_basis = False
    needs_host_scalars = False

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, B: Any, w: Any, j: int, a: Any, measure: Measure, final: bool) -> tuple[Any, Any]:
        """``(w, ||w||)`` after step ``j`` (``a = alpha_j``; ``final``: the last step, no next vector)."""
        return w, measure(w)


class FullReorth(NoReorth):
    """Every new vector orthogonalized against the whole basis ``B[:j + 1]`` by CGS2."""

    stores_basis = True

    def __call__(self, B: Any, w: Any, j: int, a: Any, measure: Measure, final: bool) -> tuple[Any, Any]:
        if not final:
            w, _ = project_out(B, w, j + 1)
            self.count += 1
        return w, measure(w)


class SelectiveReorth(FullReorth):
    """Simon's partial reorthogonalization: ``q_{j+1}`` and ``q_{j+2}`` once omega passes ``sqrt(eps)``.

    Orthogonality is lost at the rate of the matvec's rounding: ``eps`` is the larger of the
    operator's and the recurrence's unit roundoff. The omega recurrence reads ``alpha_j`` and
    ``beta_j`` at every step (host scalars).
    """

    needs_host_scalars = True

    def __init__(self, steps: int, eps: float) -> None:
        super().__init__()
        self.omega = _Omega(steps, eps)
        self.force_next = False

    def __call__(self, B: Any, w: Any, j: int, a: Any, measure: Measure, final: bool) -> tuple[Any, Any]:
        if self.force_next and not final:
            w, _ = project_out(B, w, j + 1)
            self.count += 1
        b = measure(w)
        if final:
            return w, b
        need = self.omega.step(j, float(a), float(b))
        if self.force_next:
            self.omega.reset(j)
            self.force_next = False
        elif need:
            w, _ = project_out(B, w, j + 1)
            b = measure(w)
            self.count += 1
            self.omega.reset(j)
            self.force_next = True
        return w, b


def reorth_policy(name: str, steps: int, eps: float) -> NoReorth:
    """The policy ``"none"``, ``"full"`` or ``"selective"`` for a run of ``steps`` vectors."""
    if name == "selective":
        return SelectiveReorth(steps, eps)
    return FullReorth() if name == "full" else NoReorth()


class _Omega:
    """Simon's omega recurrence: estimates of ``|q_{j+1} . q_k|`` for all ``k <= j``."""

    def __init__(self, m: int, eps: float) -> None:
        self.eps = eps
        self.prev = np.zeros(m + 1)  # omega_{j-1, k}
        self.cur = np.zeros(m + 1)  # omega_{j, k}
        self.cur[0] = 1.0
        self.alpha = np.zeros(m + 1)
        self.beta = np.zeros(m + 1)
        self.threshold = np.sqrt(eps)

    def step(self, j: int, a: float, b: float) -> bool:
        """Advance to ``omega_{j+1, .}``; True when reorthogonalization is needed."""
        self.alpha[j], self.beta[j] = a, b
        al, be = self.alpha[: j + 1], self.beta[: j + 1]
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


class HostTridiagonal:
    """Host copy (float64) of the ``alpha_j``, ``beta_j`` a device recurrence produces, read every ``every`` steps.

    :meth:`push` records one step's device scalars; at a read it checks them for NaN/Inf
    (:class:`NonFiniteError` naming the step) and for a breakdown (:func:`first_breakdown` with
    ``eps`` of the operator's dtype), and cuts the tridiagonal there.
    """

    def __init__(self, eps: float, every: int, what: str) -> None:
        self.eps, self.every, self.what = eps, every, what
        self.pending: list[tuple[Any, Any]] = []
        self.alpha, self.beta = np.empty(0), np.empty(0)
        self.anorm, self.breakdown, self.pushed = 0.0, False, 0

    def push(self, xp: Any, a: Any, b: Any, last: bool) -> bool:
        """Record ``(alpha_j, beta_j)``; True when the run must stop here (a breakdown was found)."""
        self.pending.append((a, b))
        self.pushed += 1
        if not (self.pushed % self.every == 0 or last):
            return False
        lo = self.alpha.size
        new_a = backends.stack_to_numpy([p[0] for p in self.pending]).astype(np.float64)
        new_b = backends.stack_to_numpy([p[1] for p in self.pending]).astype(np.float64)
        self.pending = []
        alpha, beta = np.concatenate([self.alpha, new_a]), np.concatenate([self.beta, new_b])
        stop = first_breakdown(alpha, beta, lo, self.eps, self.anorm)
        end = alpha.size if stop is None else stop + 1
        check_finite(np.concatenate([alpha[lo:end], beta[lo:end]]), self.what, lo)
        self.anorm = max(self.anorm, float(np.max(np.abs(alpha[:end]) + beta[:end])))
        self.alpha, self.beta = alpha[:end], beta[:end]
        self.breakdown = stop is not None
        return self.breakdown
