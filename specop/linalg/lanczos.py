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
re-enters as components along other copies of repeated eigenvalues. On accelerators the
scalars are read back to the host only every ``SYNC_EVERY`` steps (not with ``"selective"``,
whose omega recurrence reads them per step), and so they are on JAX's CPU without
reorthogonalization, where a step is one compiled program after the product: the device is
never stalled per step.
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
    check_positive_int,
    check_v0,
    ensure_symmetric,
    prepare,
    start_vector,
)
from specop.linalg._common import (
    recurrence_dtype as resolve_rdtype,
)
from specop.linalg._krylov import (
    HostTridiagonal,
    RecurrenceView,
    lanczos_step,
    normalize,
    project_out,
    reorth_policy,
    safe_norm,
    three_term,
)
from specop.linalg._krylov_util import dev, eps_of

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
    q = start_vector(A, v0, seed, rdt, "lanczos")
    eps = eps_of(A.dtype)
    policy = reorth_policy(reorth, steps, max(eps, eps_of(rdt)))
    host = backends.is_host(xp, A.device)
    # where the backend compiles per shape (JAX), a step without reorthogonalization is one program and the scalars are
    # read every SYNC_EVERY steps (each read would stall the queue of asynchronously dispatched programs)
    fused = backends.compiles_per_shape(xp) and not policy.stores_basis
    T = HostTridiagonal(eps, 1 if (policy.needs_host_scalars or host) and not fused else SYNC_EVERY, "lanczos")
    Av = RecurrenceView(A, rdt)
    B = None
    if policy.stores_basis or return_basis:
        B = backends.assign(xp.zeros((steps, n), dtype=rdt, **dev(A)), 0, q)
    q_prev, b_prev, work = None, None, backends.workspace(q)

    def measure(u: Any) -> Any:
        return safe_norm(xp, u, host)

    for j in range(steps):
        if fused:
            q_next, a, b = lanczos_step(xp, Av @ q, q, q_prev, b_prev)
            if T.push(xp, a, b, last=j + 1 == steps) or j + 1 == steps:
                break
            q_prev, b_prev, q = q, b, q_next
            if B is not None:
                B = backends.assign(B, j + 1, q)
            continue
        w, a = three_term(xp, Av @ q, q, q_prev, b_prev, work)  # Golub & Van Loan Alg. 10.1.1
        w, b = policy(B, w, j, a, measure, final=j + 1 == steps)
        if T.push(xp, a, b, last=j + 1 == steps) or j + 1 == steps:
            break
        q_prev, b_prev, q = q, b, normalize(xp, w, b)
        if B is not None:
            B = backends.assign(B, j + 1, q)
    m = T.alpha.size
    basis = B[:m, ...].T if (return_basis and B is not None) else None
    return LanczosResult(alpha=T.alpha, beta=T.beta, basis=basis, breakdown=T.breakdown, steps_done=m,
                         matvecs=Av.products + extra, reorthogonalizations=policy.count)
