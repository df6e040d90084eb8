"""Stochastic estimators of ``diag(A)`` and of ``||A||_F^2 = tr(A^T A)``, with standard errors.

* Hutchinson's diagonal estimator (Bekas, Kokiopoulou & Saad, "An estimator for the
  diagonal of a matrix", Appl. Numer. Math. 57, 2007, eq. (2) with Rademacher probes):
  ``diag(A) ~ (1/m) sum_r z_r * (A z_r)``; unbiased, exact for a diagonal ``A`` (``z_i^2 = 1``).
* XDiag (Epperly, Tropp & Webber, "XTrace: making the most of every sample in stochastic
  trace estimation", SIAM J. Matrix Anal. Appl. 45, 2024, Section 2.4): ``m`` probes
  ``Omega`` sketch ``Y = A Omega = QR``; the ``i``-th of ``m`` exchangeable estimates takes
  the diagonal of ``A`` on ``range(Y_{-i})`` (``Y`` without column ``i``) exactly and
  Hutchinson's estimate with probe ``omega_i`` on the rest; XDiag is their mean. With
  ``P_i = Q Q^T - q_i q_i^T``, ``q_i = Q s_i``, ``s_i`` the normalised ``i``-th column of
  ``R^{-T}``, and ``Z = A^T Q``, the ``i``-th estimate is (using ``y_i in range(Q)``)::

      d_i = diag(Q Z^T) - (Q s_i) * (Z s_i) + omega_i * (Q s_i) / ||R^{-T} e_i||

  (``2 m`` products in all). Unbiased, and exact when ``rank A < m`` (the sketch spans the
  range): low-rank-plus-small matrices, such as curvature with a few outliers, are where
  it beats Hutchinson at equal matvecs.
* ``||A||_F^2 = E ||A z||^2`` for Rademacher ``z`` (the Hutchinson estimate of ``tr(A^T A)``).

Standard errors: the sample standard deviation over the probes (Hutchinson) or over the
``m`` leave-one-out estimates (XDiag, as the paper's error estimate for XTrace) divided by
``sqrt(m)``, per entry. Probes come from :func:`specop.random.probes`, so results are
identical on every backend for a seed. Sums are formed in float64 where the backend has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import check_choice, check_positive_int, prepare, recurrence_dtype
from specop.linalg.trace import Estimate
from specop.random import probes, resolve_seed

__all__ = ["diagonal", "DiagonalEstimate", "frobenius_norm_squared"]


@dataclass(frozen=True)
class DiagonalEstimate:
    """An estimate of ``diag(A)``.

    Unlike :class:`~specop.Estimate` (a scalar, on the host), ``value`` and ``std_error``
    are vectors of length ``n`` and stay on the operator's backend and device (float64
    where the backend has it), where a diagonal is used (preconditioners, optimizers).

    Attributes
    ----------
    value : array, shape (n,)
        The estimate.
    std_error : array, shape (n,)
        Per-entry standard error (NaN with a single sample).
    matvecs : int
        Products with the operator (XDiag: ``A`` and ``A^T`` together).
    method : str
        ``"hutchinson"`` or ``"xdiag"``.
    samples : int
        Number of averaged samples (probes, or XDiag's leave-one-out estimates).
    """

    value: Any = field(repr=False)
    std_error: Any = field(repr=False)
    matvecs: int
    method: str
    samples: int


def _apply(A: Any, V: Any, rdt: Any, adjoint: bool = False) -> Any:
    xp = A.xp
    W = backends.astype(V, A.dtype, xp)
    return backends.astype(A.rmatmat(W) if adjoint else A.matmat(W), rdt, xp)


def _hutchinson(A: Any, n: int, m: int, key: int, block: int, rdt: Any) -> tuple[Any, Any]:
    """Per-entry mean and M2 (sum of squared deviations) of ``z * A z``, merged blockwise (Chan et al.)."""
    xp = A.xp
    mean = M2 = None
    count = 0
    for s in range(0, m, block):
        Z = probes(n, min(block, m - s), seed=key, like=A, dtype=rdt, start=s)
        c = int(Z.shape[1])
        mu, m2 = _block_moments(xp, Z, _apply(A, Z, rdt))
        if mean is None:
            mean, M2 = mu, m2
        else:
            mean, M2 = _chan_merge(xp, mean, M2, mu, m2, count, c)
        count += c
    return mean, M2


@backends.kernel
def _block_moments(xp: Any, Z: Any, AZ: Any) -> tuple[Any, Any]:
    """Per-entry mean and M2 of the samples ``z * A z`` of one block of probes."""
    S = Z * AZ
    mu = xp.mean(S, axis=1)
    return mu, xp.sum((S - mu[:, None]) ** 2, axis=1)


@backends.kernel
def _chan_merge(xp: Any, mean: Any, M2: Any, mu: Any, m2: Any, count: int, c: int) -> tuple[Any, Any]:
    """Merge the moments of ``c`` new samples into those of ``count`` (Chan, Golub & LeVeque)."""
    delta = mu - mean
    return mean + delta * (c / (count + c)), M2 + m2 + delta * delta * (count * c / (count + c))


def _xdiag(A: Any, n: int, m: int, key: int, rdt: Any) -> tuple[Any, int]:
    """The ``m`` leave-one-out XDiag estimates as the columns of an ``(n, m)`` array; the products spent.

    A numerically rank-deficient sketch (``rank Y = r < m``, so ``Y`` spans ``range A``) makes every
    leave-one-out projector the projector onto ``range Y``: all ``m`` estimates are then
    ``diag(Q Q^T A)`` with ``Q`` an orthonormal basis of ``range Y``, the exact diagonal.
    """
    xp = A.xp
    Om = probes(n, m, seed=key, like=A, dtype=rdt)
    Q, R = xp.linalg.qr(_apply(A, Om, rdt))
    Rh = backends.to_numpy(R).astype(np.float64)
    U, sv, _ = np.linalg.svd(Rh)
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    rank = int(np.sum(sv > m * eps * sv[0])) if sv[0] > 0 else 0
    if rank < m:
        Qr = Q @ backends.from_numpy(U[:, :rank], xp, A.device, rdt)
        if rank == 0:
            return xp.zeros_like(Om), m
        base = xp.sum(Qr * _apply(A, Qr, rdt, adjoint=True), axis=1)
        return base[:, None] + xp.zeros_like(Om), m + rank
    Z = _apply(A, Q, rdt, adjoint=True)
    W = np.linalg.inv(Rh).T  # R^{-T}
    wn = np.linalg.norm(W, axis=0)
    S = backends.from_numpy(W / wn, xp, A.device, rdt)
    inv = backends.from_numpy(1.0 / wn, xp, A.device, rdt)
    return _xdiag_estimates(xp, Q, Z, S, Om, inv), 2 * m


@backends.kernel
def _xdiag_estimates(xp: Any, Q: Any, Z: Any, S: Any, Om: Any, inv: Any) -> Any:
    """The ``m`` leave-one-out estimates from ``Q``, ``Z = A^T Q``, the normalized ``R^{-T}`` and the probes."""
    QS, ZS = Q @ S, Z @ S
    base = xp.sum(Q * Z, axis=1)
    return base[:, None] - QS * ZS + Om * QS * inv[None, :] / (Om * Om)


def diagonal(A: Any, *, method: str = "hutchinson", num_probes: int = 30, seed: Any = None,
             block: int = 16) -> DiagonalEstimate:
    """Estimate ``diag(A)`` of a square operator with per-entry standard errors.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square operator (XDiag needs ``rmatmat`` for a non-symmetric one).
    method : {"hutchinson", "xdiag"}
        See the module docstring.
    num_probes : int
        The matvec budget: Hutchinson uses ``num_probes`` probes; XDiag
        ``m = num_probes // 2`` probes and ``2 m`` products (``num_probes >= 4``; fewer when
        the sketch is rank deficient, where the estimate is exact).
    seed : int, numpy Generator or None
        Seed of the probes.
    block : int
        Probes per ``matmat`` call (Hutchinson).

    Returns
    -------
    DiagonalEstimate
    """
    check_choice(method, "method", ("hutchinson", "xdiag"))
    num_probes = check_positive_int(num_probes, "num_probes", 4 if method == "xdiag" else 1)
    block = check_positive_int(block, "block")
    A, n = prepare(A, "diagonal")
    key, rdt, xp = resolve_seed(seed), recurrence_dtype(A, "float64"), A.xp
    with backends.host_blas_single_thread(xp):
        if method == "hutchinson":
            mean, M2 = _hutchinson(A, n, num_probes, key, block, rdt)
            m, used = num_probes, num_probes
        else:
            m = min(num_probes // 2, n)
            D, used = _xdiag(A, n, m, key, rdt)
            mean = xp.mean(D, axis=1)
            M2 = xp.sum((D - mean[:, None]) ** 2, axis=1)
    se = xp.sqrt(M2 / (m - 1) / m) if m > 1 else xp.full_like(mean, float("nan"))
    _check_finite(xp, mean, "diagonal")
    return DiagonalEstimate(value=mean, std_error=se, matvecs=used, method=method, samples=m)


def _check_finite(xp: Any, v: Any, what: str) -> None:
    from specop._errors import NonFiniteError

    if not bool(backends.to_numpy(xp.all(xp.isfinite(v)))):
        raise NonFiniteError(f"{what}: a matvec returned NaN or Inf")


def frobenius_norm_squared(A: Any, *, num_probes: int = 30, seed: Any = None, block: int = 16) -> Estimate:
    """``||A||_F^2 = tr(A^T A)`` (any shape) by ``E ||A z||^2`` with Rademacher ``z``.

    Parameters
    ----------
    A : LinearOperator or array-like
    num_probes : int
        Probes (= matvecs).
    seed : int, numpy Generator or None
    block : int
        Probes per ``matmat`` call.

    Returns
    -------
    Estimate
        ``.value`` (host float), ``.std_error``, ``.matvecs``, ``.samples`` (``||A z_r||^2``).
    """
    from specop._errors import NonFiniteError
    from specop.operators.scipy_bridge import aslinearoperator

    A = aslinearoperator(A)
    num_probes = check_positive_int(num_probes, "num_probes")
    block = check_positive_int(block, "block")
    key, rdt, xp = resolve_seed(seed), recurrence_dtype(A, "float64"), A.xp
    n = A.shape[1]
    parts = []
    for s in range(0, num_probes, block):
        Y = _apply(A, probes(n, min(block, num_probes - s), seed=key, like=A, dtype=rdt, start=s), rdt)
        parts.append(backends.to_numpy(xp.sum(Y * Y, axis=0)).astype(np.float64))
    samples = np.concatenate(parts)
    if not np.all(np.isfinite(samples)):
        raise NonFiniteError("frobenius_norm_squared: a matvec returned NaN or Inf")
    se = float(samples.std(ddof=1) / np.sqrt(samples.size)) if samples.size > 1 else float("nan")
    return Estimate(float(samples.mean()), se, num_probes, samples, "hutchinson")
