"""Damped inverses ``(A + damping I)^{-1}`` as operators, the :func:`solve` shortcut, low-rank preconditioners.

:class:`InverseOperator` applies ``(A + mu I)^{-1}`` by an inner Krylov solve per product
(:func:`~specop.linalg.cg` for a positive definite ``A + mu I``, :func:`~specop.linalg.minres`
for an indefinite one; blocks of vectors are solved together through ``matmat``), so it
can go wherever an operator goes: ``eigsh(InverseOperator(H, damping=1e-3), k=5)`` gives the
eigenvalues of ``H`` nearest ``-mu`` as ``1 / theta - mu``. An inner solve that misses its
tolerance raises :class:`InnerSolveError` (or warns, with ``on_failure="warn"``): an inexact
inverse must not pass for an exact one.

Accuracy inside eigsh: an inner solve to relative residual ``rtol`` perturbs each product by
at most ``rtol ||v|| / lambda_min(A + mu I) = rtol ||v|| theta_max``, and the perturbation
depends on ``v`` (a Krylov solve is not a linear function of its right-hand side), so the
Ritz residuals of eigsh settle near ``rtol theta_max``: ask eigsh for ``tol`` at least about
ten times the inner ``rtol`` (the defaults ``rtol=1e-8`` here and ``tol=1e-6`` there give
eigenvalues of the inverse to about ``1e-8`` relative).

Preconditioners for ``A + mu I`` from ``k`` eigenpairs ``(lambda_i, u_i)`` of ``A`` (the top
of the spectrum, where CG spends its iterations), both in the form of Frangella, Tropp &
Udell, "Randomized Nystrom preconditioning", SIAM J. Matrix Anal. Appl. 44, 2023, eq. (5.3)::

    P^{-1} = (lambda_k + mu) U (Lambda + mu I)^{-1} U^T + (I - U U^T)

which maps the top ``k`` eigenvalues of ``A + mu I`` to ``lambda_k + mu`` and leaves the rest,
so the condition number drops from ``(lambda_1 + mu) / (lambda_n + mu)`` to
``(lambda_k + mu) / (lambda_n + mu)``:

* :func:`spectral_preconditioner` takes the pairs from :func:`~specop.eigsh` (exact,
  any symmetric ``A`` whose kept ``lambda_i + mu > 0``);
* :func:`nystrom_preconditioner` sketches a positive semidefinite ``A`` once (one ``matmat``
  of ``rank`` columns) by the stabilised randomized Nystrom approximation (ibid., Alg. 2.1).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._common import check_choice, check_positive_int, ensure_symmetric, prepare
from specop.linalg._solver_common import SolveResult, check_maxiter, check_real
from specop.linalg.cg import cg
from specop.linalg.minres import minres
from specop.operators.base import LinearOperator
from specop.random import probes

__all__ = ["InverseOperator", "InnerSolveError", "solve", "LowRankPreconditioner", "spectral_preconditioner",
           "nystrom_preconditioner"]

METHODS = ("cg", "minres")


class InnerSolveError(ArithmeticError):
    """An inner solve of an :class:`InverseOperator` missed its tolerance; ``.result`` holds it."""

    def __init__(self, message: str, result: SolveResult) -> None:
        super().__init__(message)
        self.result = result


def solve(A: Any, b: Any, *, damping: float = 0.0, method: str = "cg", rtol: float = 1e-8, atol: float = 0.0,
          maxiter: int | None = None, preconditioner: Any = None, x0: Any = None) -> SolveResult:
    """Solve ``(A + damping I) x = b`` for a symmetric ``A`` (the shortcut behind ``A.solve``).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    b : array, shape (n,) or (n, k)
        Right-hand side(s).
    damping : float
        ``mu`` in ``A + mu I`` (any real; ``A + mu I`` must be positive definite for cg).
    method : {"cg", "minres"}
        :func:`~specop.linalg.cg` (``A + mu I`` positive definite) or
        :func:`~specop.linalg.minres` (any symmetric, nonsingular or consistent).
    rtol, atol, maxiter
        As in :func:`~specop.linalg.cg`.
    preconditioner : LinearOperator, optional
        SPD approximation of ``(A + mu I)^{-1}`` (see :func:`spectral_preconditioner`).
    x0 : array, optional
        Starting guess.

    Returns
    -------
    SolveResult
    """
    check_choice(method, "method", METHODS)
    A, _ = prepare(A, "solve")
    damping = check_real(damping, "damping", low=-np.inf)
    if method == "minres":
        return minres(A, b, x0=x0, shift=-damping, rtol=rtol, atol=atol, maxiter=maxiter, M=preconditioner)
    op = A if damping == 0 else A.shift(-damping)
    return cg(op, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, M=preconditioner)


class InverseOperator(LinearOperator):
    """``(A + damping I)^{-1}`` of a symmetric ``A``, applied by an inner Krylov solve per product.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    damping : float
        ``mu``; ``A + mu I`` must be nonsingular (positive definite for ``method="cg"``).
    method : {"cg", "minres"}
        Inner solver.
    rtol, atol, maxiter
        Inner tolerance ``||v - (A + mu I) x|| <= max(rtol ||v||, atol)`` per column, and the
        inner iteration limit.
    preconditioner : LinearOperator, optional
        SPD approximation of ``(A + mu I)^{-1}`` for the inner solves.
    on_failure : {"raise", "warn"}
        What an inner solve that misses its tolerance does: raise :class:`InnerSolveError`
        (default) or warn (:class:`~specop.ConvergenceWarning`) and return its iterate.
    check_symmetric : {"auto", True, False}
        The symmetry check of ``A`` at construction, as in :func:`specop.eigsh` (``"auto"``: free
        for operators symmetric by construction, two products for one that only claims it). The
        inverse is declared symmetric, so the algorithms that get it trust it: a non-symmetric
        ``A`` is refused here rather than giving plausible wrong eigenvalues there.

    Attributes
    ----------
    inner_matvecs : int
        Products with ``A`` spent by all inner solves so far.
    solves : int
        Right-hand sides solved so far.
    last_result : SolveResult or None
        The latest inner solve.

    Notes
    -----
    The operator is symmetric (``rmatvec`` is ``matvec``). Its products are accurate to the
    inner tolerance only; see the module docstring for what that means inside eigsh.
    """

    def __init__(self, A: Any, *, damping: float = 0.0, method: str = "cg", rtol: float = 1e-8,
                 atol: float = 0.0, maxiter: int | None = None, preconditioner: Any = None,
                 on_failure: str = "raise", check_symmetric: bool | str = "auto") -> None:
        A, _ = prepare(A, "InverseOperator")
        ensure_symmetric(A, "InverseOperator", check_symmetric)
        self.method = check_choice(method, "method", METHODS)
        self.damping = check_real(damping, "damping", low=-np.inf)
        self.rtol, self.atol = check_real(rtol, "rtol"), check_real(atol, "atol")
        self.maxiter = None if maxiter is None else check_maxiter(maxiter, 0)
        self.on_failure = check_choice(on_failure, "on_failure", ("raise", "warn"))
        self.base, self.preconditioner = A, preconditioner
        self.inner_matvecs, self.solves = 0, 0
        self.last_result: SolveResult | None = None
        super().__init__(A.shape, A.dtype, xp=A.xp, device=A.device, symmetric=True)

    def _matmat(self, V: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, once, with context
            res = solve(self.base, V, damping=self.damping, method=self.method, rtol=self.rtol, atol=self.atol,
                        maxiter=self.maxiter, preconditioner=self.preconditioner)
        self.inner_matvecs += res.matvecs
        self.solves += V.shape[1]
        self.last_result = res
        if not res.converged:
            bnorm = backends.to_numpy(self.xp.sqrt(self.xp.sum(V * V, axis=0))).astype(np.float64)
            rel = np.asarray(res.residual_norms) / np.where(bnorm > 0, bnorm, 1.0)
            why = ("A + damping I is not positive definite (negative curvature): use method='minres' or a "
                   "larger damping" if res.info < 0 else f"after {res.iterations} iterations")
            msg = (f"InverseOperator: an inner {self.method} solve of (A + {self.damping:g} I) x = v missed "
                   f"rtol = {self.rtol:g}: relative residual {float(np.max(rel)):.2e} ({why})")
            if self.on_failure == "raise":
                raise InnerSolveError(msg, res)
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        return backends.astype(res.x, self.dtype, self.xp)


class LowRankPreconditioner(LinearOperator):
    """``P^{-1} = (lambda_k + mu) U (Lambda + mu I)^{-1} U^T + (I - U U^T)`` (see the module docstring).

    Parameters
    ----------
    U : array, shape (n, k)
        Orthonormal columns (backend array).
    lam : numpy.ndarray, shape (k,)
        Their eigenvalues (the preconditioner's floor ``lambda_k`` is the smallest).
    damping : float
        ``mu``; every ``lambda_i + mu`` must be positive.
    """

    def __init__(self, U: Any, lam: Any, damping: float) -> None:
        lam = np.asarray(lam, dtype=np.float64)
        mu = check_real(damping, "damping", low=-np.inf)
        if lam.ndim != 1 or U.ndim != 2 or U.shape[1] != lam.size or lam.size == 0:
            raise ValueError(f"eigenpairs: expected U of shape (n, k) and k >= 1 eigenvalues, got U "
                             f"{tuple(U.shape)} and {lam.size} eigenvalues")
        if not np.all(lam + mu > 0):
            raise ValueError(f"damping: every kept lambda_i + mu must be positive, got min lambda_i + mu = "
                             f"{float(np.min(lam + mu)):.6g} (lambda_min kept {float(lam.min()):.6g}, mu {mu:g})")
        xp = backends.namespace_of(U)
        n = U.shape[0]
        self.U, self.eigenvalues, self.damping = U, lam, mu
        scale = (lam.min() + mu) / (lam + mu) - 1.0
        self._scale = backends.from_numpy(scale, xp, backends.device_of(U), U.dtype)
        super().__init__((n, n), U.dtype, xp=xp, device=backends.device_of(U), symmetric=True)

    def _matmat(self, V: Any) -> Any:
        return V + self.U @ (self._scale[:, None] * (self.U.T @ V))


def spectral_preconditioner(eigenpairs: Any, damping: float) -> LowRankPreconditioner:
    """Preconditioner for ``A + damping I`` from eigenpairs of ``A`` (an :class:`~specop.EigshResult`).

    Parameters
    ----------
    eigenpairs : EigshResult or (eigenvalues, eigenvectors)
        Top eigenpairs of ``A`` (``which="LA"``), eigenvectors on ``A``'s backend.
    damping : float
        ``mu``.

    Returns
    -------
    LowRankPreconditioner
        Pass it as ``M=`` to :func:`~specop.linalg.cg` or ``preconditioner=`` to
        :class:`InverseOperator` / :func:`solve`.
    """
    vals, vecs = eigenpairs
    if vecs is None:
        raise ValueError("eigenpairs: expected eigenvectors, got None (call eigsh with return_eigenvectors=True)")
    return LowRankPreconditioner(vecs, np.asarray(vals, dtype=np.float64), damping)


def nystrom_preconditioner(A: Any, rank: int, *, damping: float, seed: Any = None) -> LowRankPreconditioner:
    """Randomized Nystrom preconditioner for ``A + damping I``, ``A`` positive semidefinite.

    One ``matmat`` with ``rank`` orthonormalised Gaussian probes (Frangella, Tropp & Udell,
    Alg. 2.1, with the shift ``nu = sqrt(n) eps ||Y||`` for stability).

    Raises
    ------
    ValueError
        When the sketch shows that ``A`` is not positive semidefinite (use
        :func:`spectral_preconditioner` with eigenpairs from eigsh then).
    """
    A, n = prepare(A, "nystrom_preconditioner")
    rank = check_positive_int(rank, "rank")
    if rank > n:
        raise ValueError(f"rank: expected at most n = {n}, got {rank}")
    xp = A.xp
    rdt = backends.promote_dtype(xp, A.dtype, "float64")
    Om, _ = xp.linalg.qr(probes(n, rank, seed=seed, kind="gaussian", like=A, dtype=rdt))
    Y = backends.astype(A.matmat(backends.astype(Om, A.dtype, xp)), rdt, xp)
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    nu = float(np.sqrt(n) * eps * np.linalg.norm(backends.to_numpy(Y), 2))
    Ynu = Y + nu * Om
    core = backends.to_numpy(Om.T @ Ynu).astype(np.float64)
    try:
        C = np.linalg.cholesky((core + core.T) / 2)
    except np.linalg.LinAlgError as exc:
        raise ValueError("nystrom_preconditioner: A is not positive semidefinite on the sketch (Omega^T A Omega "
                         "has a negative eigenvalue); use spectral_preconditioner(eigsh(A, k)) instead") from exc
    Cinv = backends.from_numpy(np.linalg.inv(C).T, xp, A.device, rdt)  # B = Y_nu C^{-T}, C lower
    U, S, _ = xp.linalg.svd(Ynu @ Cinv, full_matrices=False)
    lam = np.maximum(backends.to_numpy(S).astype(np.float64) ** 2 - nu, 0.0)
    return LowRankPreconditioner(backends.astype(U, A.dtype, xp), lam, damping)
