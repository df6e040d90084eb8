"""Partial SVD of any (m, n) operator by thick-restart Golub-Kahan-Lanczos bidiagonalization.

The bidiagonalization (Golub & Kahan, SIAM J. Numer. Anal. 2, 1965) builds orthonormal
``P = [p_0 .. p_{s-1}]`` (right, ``R^N``) and ``Q = [q_0 .. q_{s-1}]`` (left, ``R^M``) with

    X P = Q B,        X^T Q = P B^T + beta p_s e_s^T,

``B = Q^T X P`` upper triangular (bidiagonal until the first restart), from products with
``X`` and ``X^T`` only. Both bases are reorthogonalized in full (CGS2), and ``B`` is taken
from the reorthogonalization coefficients, so it is exact to rounding after restarts too.
The singular triplets ``(sigma, U_i, V_i)`` of the small ``B`` give Ritz triplets
``u = Q U_i``, ``v = P V_i`` with ``X v - sigma u = 0`` and ``||X^T u - sigma v|| = beta |U_{s,i}|``:
the residual of every triplet is known after every step without a product.

Restarts follow the augmented (thick-restart) method of Baglama & Reichel, "Augmented
implicitly restarted Lanczos bidiagonalization methods", SIAM J. Sci. Comput. 27 (2005),
Sec. 2: when the basis holds ``ncv`` vectors it is compressed to the ``l`` best Ritz
triplets plus the residual direction ``p_s``; the new ``B`` is ``diag(sigma_1..sigma_l)``
with the column ``beta U_{s,1..l}`` beside it, which the next step's reorthogonalization
produces by itself. ``which="LM"`` keeps the largest Ritz values, ``"SM"`` the smallest.

``X`` is ``A`` when ``m >= n`` and ``A^T`` otherwise, so that the right vectors live in the
smaller space ``R^N``, ``N = min(m, n)``, where ``X^T X`` has no spurious zero eigenvalues.

Convergence: a triplet is converged when ``rho = ||X^T u - sigma v|| <= max(tol sigma,
floor)``, ``floor = 100 eps ||A||`` (``eps`` of the operator's dtype, ``||A||`` estimated from
below by the largest Ritz value); then ``|sigma - sigma_j| <= rho`` for a singular value
``sigma_j`` of ``A`` (or zero). Like every single-vector Krylov method, the iteration sees one
vector of each singular subspace, so copies of a repeated singular value appear only
through rounding: with ``verify=True`` (default), once the ``k`` triplets have converged
they are locked and a fresh random start vector, orthogonal to them, runs the
bidiagonalization of the deflated operator until its extreme Ritz triplet has settled
clear of the wanted set (the rule of :func:`specop.linalg._which.settled`); a singular
value beyond it (a missed copy) is converged, locked, and the check repeats.

Accuracy of ``which="SM"``: the smallest singular values are the bottom of the spectrum of
``X^T X`` and converge slowly when they are small compared with ``||A||`` (the Ritz values
approach them from above at a rate set by the gaps relative to ``||A||``); their absolute
accuracy is about ``eps ||A||``, so a relative accuracy of ``eps ||A|| / sigma`` at best: a
singular value near ``eps ||A||`` is indistinguishable from zero. When the tolerance is out
of reach the run ends at ``maxiter`` restarts with ``converged=False`` and a
:class:`~specop.ConvergenceWarning`. Harmonic Ritz restarts (Baglama & Reichel, Sec. 3) would
converge faster for ``"SM"`` and are not implemented.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop.linalg._bidiag import Bidiag
from specop.linalg._common import check_choice, check_positive_int
from specop.linalg._krylov_util import as_operator

__all__ = ["svds", "SvdsResult"]

WHICH = ("LM", "SM")


@dataclass(frozen=True)
class SvdsResult:
    """Outcome of :func:`svds`; unpacks as ``u, s, vh = svds(...)`` like scipy.

    Attributes
    ----------
    u : array of shape (m, k) or None
        Left singular vectors as columns (the operator's backend, dtype and device).
    singular_values : numpy.ndarray, shape (k,)
        Ascending (scipy's order), float64 on the host.
    vh : array of shape (k, n) or None
        Right singular vectors as rows.
    residual_norms : numpy.ndarray, shape (k,)
        ``||A^T u - s v||`` (for ``m >= n``; ``||A v - s u||`` otherwise) of each triplet, from the
        bidiagonalization (the other residual is zero up to rounding).
    matvecs : int
        Products with ``A``.
    rmatvecs : int
        Products with ``A^T`` (``matvecs + rmatvecs`` is the total cost).
    converged : bool
        Whether every triplet met the tolerance.
    restarts : int
        Number of thick restarts.
    verified : bool
        Whether the check for missed copies of repeated singular values settled.
    """

    u: Any = field(repr=False)
    singular_values: np.ndarray
    vh: Any = field(repr=False)
    residual_norms: np.ndarray
    matvecs: int
    rmatvecs: int
    converged: bool
    restarts: int = 0
    verified: bool = False

    def __iter__(self):
        yield self.u
        yield self.singular_values
        yield self.vh

    @property
    def products(self) -> int:
        """``matvecs + rmatvecs``."""
        return self.matvecs + self.rmatvecs


def svds(A: Any, k: int = 6, *, which: str = "LM", tol: float = 1e-8, maxiter: int | None = None,
         ncv: int | None = None, v0: Any = None, seed: Any = None,
         return_singular_vectors: bool | str = True, verify: bool = True) -> SvdsResult:
    """``k`` largest (or smallest) singular triplets of an ``(m, n)`` operator.

    Parameters
    ----------
    A : LinearOperator or array-like
        Any operator with ``matvec`` and ``rmatvec`` (a non-symmetric
        :class:`~specop.FunctionOperator` needs ``rmatvec=``), an array, or a scipy matrix.
    k : int
        Number of triplets, ``1 <= k <= min(m, n)``.
    which : {"LM", "SM"}
        Largest or smallest singular values (see the module docstring for "SM").
    tol : float
        Relative residual tolerance (0: machine precision); see the module docstring.
    maxiter : int, optional
        Maximum number of restarts (default ``max(100, 10 N / ncv)``; "SM" ten times that).
    ncv : int, optional
        Basis size, ``k < ncv <= min(m, n)`` (default ``min(N, max(2k + 1, k + 20))``).
    v0 : array, optional
        Start vector of shape ``(min(m, n),)`` as in scipy (right vector when ``m >= n``).
    seed : int, numpy Generator or None
        Seed of the start vector and of fresh vectors after breakdowns and in the check.
    return_singular_vectors : {True, False, "u", "vh"}
        Which singular vectors to return (``"u"``: only ``u``; ``"vh"``: only ``vh``).
    verify : bool
        Look for missed copies of repeated singular values at the end (module docstring).

    Returns
    -------
    SvdsResult

    Raises
    ------
    ValueError
        For a bad ``k``, ``which``, ``tol``, ``ncv``, ``maxiter`` or ``v0``.
    TypeError
        When ``A`` has no adjoint product.
    NonFiniteError
        When a product returns NaN or Inf (the product is named).
    """
    A = as_operator(A, "A")
    m, n = A.shape
    N = min(m, n)
    k = check_positive_int(k, "k")
    if k > N:
        raise ValueError(f"k: expected 1 <= k <= min(m, n) = {N}, got {k}")
    which = check_choice(which, "which", WHICH)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol: expected a finite non-negative number, got {tol!r}")
    if return_singular_vectors not in (True, False, "u", "vh"):
        raise ValueError(f"return_singular_vectors: expected True, False, 'u' or 'vh', got {return_singular_vectors!r}")
    if not isinstance(verify, bool):
        raise ValueError(f"verify: expected True or False, got {verify!r}")
    ncv = min(N, max(2 * k + 1, k + 20)) if ncv is None else check_positive_int(ncv, "ncv")
    if not (k < ncv <= N or ncv == k == N):
        raise ValueError(f"ncv: expected k = {k} < ncv <= min(m, n) = {N}, got {ncv}")
    base = max(100, 10 * N // ncv) * (10 if which == "SM" else 1)
    maxiter = base if maxiter is None else check_positive_int(maxiter, "maxiter")
    run = Bidiag(A, k, which, float(tol), maxiter, ncv, seed, verify)
    with backends.host_blas_single_thread(A.xp, include_host=True):
        return SvdsResult(*run.run(v0, return_singular_vectors))
