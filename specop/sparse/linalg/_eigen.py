"""scipy's ``eigsh``, ``svds`` and ``lobpcg`` on specop's algorithms, for every backend.

Signatures, defaults, validation messages and return values are scipy's
(``scipy.sparse.linalg``, version 1.17); the work is done by :func:`specop.eigsh`
(thick-restart Lanczos, Wu & Simon 2000), :func:`specop.svds` (thick-restart
Golub-Kahan-Lanczos, Baglama & Reichel 2005) and :func:`specop.lobpcg` (Knyazev 2001).
Where scipy's ARPACK would raise :class:`scipy.sparse.linalg.ArpackNoConvergence`, so do
these (the same class, through a subclass carrying specop's counts).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as spla

from specop import backends
from specop.linalg import eigsh as _eigsh
from specop.linalg import lanczos as _lanczos
from specop.linalg import lobpcg as _lobpcg
from specop.linalg import svds as _svds
from specop.linalg._common import column_norms, ensure_symmetric
from specop.operators import LinearOperator as _Base
from specop.sparse.linalg._convert import (
    as_claimed_symmetric,
    as_operator,
    is_complex,
    not_yet,
    quiet,
    reemit,
    to_backend,
    value_order,
    vector,
)
from specop.sparse.linalg._generalized import b_lanczos, operator_maps
from specop.sparse.linalg._hermitian import hermitian_eigsh
from specop.sparse.linalg._shift_invert import INNER_FLOOR, Plan, back_transform, deflated_rerun, plan


def _stored(X: Any) -> bool:
    return scipy.sparse.issparse(X) or isinstance(X, np.ndarray)


def _ident(X: Any) -> Any:
    return X

__all__ = ["eigsh", "svds", "lobpcg", "ArpackError", "ArpackNoConvergence"]

ArpackError = spla.ArpackError


class ArpackNoConvergence(spla.ArpackNoConvergence):
    """No convergence within ``maxiter`` (scipy's exception, so ``except scipy.sparse.linalg.ArpackNoConvergence``
    catches it).

    Attributes
    ----------
    eigenvalues : array
        Partial result: the converged eigenvalues (singular values for ``svds``), on the input's backend.
    eigenvectors : array
        The converged eigenvectors (``svds``: right singular vectors as columns), or None.
    result : EigshResult or SvdsResult
        specop's full result (every pair, residual norms, matvec count).
    """

    def __init__(self, msg: str, eigenvalues: Any, eigenvectors: Any, result: Any = None) -> None:
        super().__init__(msg, eigenvalues, eigenvectors)
        self.result = result


_EIGSH_WHICH = ("LM", "SM", "LA", "SA", "BE")


def _converged_mask(values: np.ndarray, residuals: np.ndarray, tol: float, dtype: Any) -> np.ndarray:
    """Which pairs meet specop's acceptance test ``rho <= max(tol |theta|, 100 eps max|theta|)``."""
    eps = float(np.finfo(backends.dtype_name(dtype)).eps)
    top = float(np.max(np.abs(values))) if values.size else 0.0
    return residuals <= np.maximum(max(tol, eps) * np.abs(values), 100 * eps * top)


def _columns(op: _Base, V: Any, idx: np.ndarray) -> Any:
    """The columns ``idx`` of a backend array ``V`` (``take``: the array API has no list indexing)."""
    return op.xp.take(V, backends.from_numpy(idx.astype(np.int64), op.xp, op.device), axis=1)


def eigsh(A: Any, k: int = 6, M: Any = None, sigma: Any = None, which: str = "LM", v0: Any = None,
          ncv: int | None = None, maxiter: int | None = None, tol: float = 0, return_eigenvectors: bool = True,
          Minv: Any = None, OPinv: Any = None, mode: str = "normal", rng: Any = None) -> Any:
    """``k`` eigenvalues (and eigenvectors) of a real symmetric operator: :func:`scipy.sparse.linalg.eigsh`.

    Every argument has scipy's meaning and default; the computation is :func:`specop.eigsh`
    (thick-restart Lanczos) on any backend. ``tol=0`` is the machine precision of ``A``'s
    dtype; ``maxiter`` counts restarts (default specop's ``max(100, 10 n / ncv)``, not ARPACK's
    ``10 n``); ``ncv`` defaults to specop's ``max(2k + 1, k + 30)`` (fewer products than ARPACK's
    ``max(2k + 1, 20)``). ``sigma``, ``mode``, ``OPinv``, ``M`` (stored, or given only by its products:
    then Lanczos in the ``M``-inner product with ``Minv`` or an inner CG solve on ``M``, see
    :mod:`specop.sparse.linalg._generalized`), ``which="SM"`` and complex Hermitian ``A`` are supported.

    Returns
    -------
    w : array, shape (k,)
        Eigenvalues in ``A``'s dtype on its backend and device: ascending, or in ARPACK's
        order (least wanted first) when ``return_eigenvectors=False``.
    v : array, shape (n, k)
        Eigenvectors as columns (only when ``return_eigenvectors=True``).

    Raises
    ------
    ArpackNoConvergence
        When the pairs have not converged within ``maxiter`` restarts (partial results attached).
    ValueError, TypeError
        scipy's, for bad arguments; ``ValueError`` also for an operator that is not symmetric.
    """
    if OPinv is not None and sigma is None:
        raise ValueError("OPinv should not be specified with sigma = None.")
    if Minv is not None and M is None and sigma is None:
        raise ValueError("Minv should not be specified with M = None.")
    if Minv is not None and sigma is not None:
        raise ValueError("Minv should not be specified when sigma is specified.")
    if sigma is not None and mode not in ("normal", "buckling", "cayley"):
        raise ValueError(f"unrecognized mode '{mode}'")
    if any(X is not None and is_complex(X) for X in (A, M, OPinv)):
        if which not in ("LM", "SM", "LA", "SA"):  # scipy runs complex Hermitian problems through eigs
            raise ValueError(f"which='{which}' cannot be used with complex matrix A")
        if k <= 0:
            raise ValueError("k must be greater than 0.")
        if ncv is not None and ncv <= k:
            raise ValueError(f"ncv must be k<ncv<=n, ncv={ncv}")
        return hermitian_eigsh(eigsh, ArpackNoConvergence, A, int(k), M, sigma, which, v0, ncv, maxiter, tol,
                               return_eigenvectors, OPinv, mode, rng)
    op = as_operator(A, "eigsh")
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"expected square matrix (shape={op.shape})")
    n = op.shape[0]
    if k <= 0:
        raise ValueError("k must be greater than 0.")
    if k >= n:
        warnings.warn("k >= N for N * N square matrix. Attempting to use scipy.linalg.eigh instead.",
                      RuntimeWarning, stacklevel=2)
        if scipy.sparse.issparse(A):
            raise TypeError("Cannot use scipy.linalg.eigh for sparse A with k >= N. "
                            "Use scipy.linalg.eigh(A.toarray()) or reduce k.")
        if isinstance(A, spla.LinearOperator | _Base):
            raise TypeError("Cannot use scipy.linalg.eigh for LinearOperator A with k >= N.")
        if M is not None:  # scipy: scipy.linalg.eigh(A, M)
            w, V = scipy.linalg.eigh(backends.to_numpy(op.to_dense()).astype(np.float64),
                                     backends.to_numpy(as_operator(M, "eigsh").to_dense()).astype(np.float64))
            return (to_backend(w, op), to_backend(V, op)) if return_eigenvectors else to_backend(w, op)
        res = _eigsh(op, n, which="LA", dense=True, return_eigenvectors=return_eigenvectors)
        w = to_backend(res.eigenvalues, op)
        return (w, res.eigenvectors) if return_eigenvectors else w
    if which not in _EIGSH_WHICH:
        raise ValueError("which must be one of " + " ".join(_EIGSH_WHICH))
    if maxiter is not None and maxiter <= 0:
        raise ValueError(f"maxiter must be positive, maxiter={maxiter}")
    if ncv is not None and ncv <= k:
        raise ValueError(f"ncv must be k<ncv<=n, ncv={ncv}")
    if ncv is not None:
        ncv = min(ncv, n)  # scipy's ARPACK wrapper clamps a larger ncv to n
    if which == "BE" and k == 1:
        raise ArpackError(-13, {-13: "NEV and WHICH = 'BE' are incompatible."})
    if v0 is not None:
        v0 = vector(op, v0, "v0", n, op.shape)
    eps = float(np.finfo(backends.dtype_name(op.dtype)).eps)
    tol_eff = eps if not tol > 0 else float(tol)  # ARPACK: tol <= 0 means machine precision
    if sigma is not None or M is not None:
        return _transformed(A, op, int(k), M, sigma, which, v0, ncv, maxiter, tol_eff, return_eigenvectors,
                            mode, OPinv, rng, Minv)
    with quiet() as caught:
        res = _eigsh(as_claimed_symmetric(op), int(k), which=which, tol=tol_eff, maxiter=maxiter, ncv=ncv, v0=v0,
                     seed=rng, return_eigenvectors=return_eigenvectors)
    if not res.converged:
        ok = _converged_mask(res.eigenvalues, res.residual_norms, tol_eff, op.dtype)
        vecs = None if res.eigenvectors is None else _columns(op, res.eigenvectors, np.flatnonzero(ok))
        raise ArpackNoConvergence(f"No convergence ({res.restarts} restarts of specop's thick-restart Lanczos, "
                                  f"{res.matvecs} products, {int(ok.sum())}/{k} eigenvectors converged to "
                                  f"tol = {tol_eff:.1e}; residual norms "
                                  f"{np.array2string(res.residual_norms, precision=2)})",
                                  to_backend(res.eigenvalues[ok], op), vecs, res)
    reemit(caught)
    if return_eigenvectors:
        return to_backend(res.eigenvalues, op), res.eigenvectors
    return to_backend(res.eigenvalues[value_order(res.eigenvalues, which)], op)


def _norm_estimate(B: _Base) -> float:
    """``||B||_2`` from below (the extreme Ritz values of a short Lanczos run: 20 products at most)."""
    res = _lanczos(B, steps=min(B.shape[0], 20), seed=0, check_symmetric=False)
    values = res.ritz()[0]
    return float(np.max(np.abs(values))) if values.size else 0.0


def _transformed(A: Any, op: _Base, k: int, M: Any, sigma: Any, which: str, v0: Any, ncv: int | None,
                 maxiter: int | None, tol: float, vectors: bool, mode: str, OPinv: Any, rng: Any,
                 Minv: Any = None) -> Any:
    """eigsh with ``sigma`` and/or ``M``: specop's eigsh on the transformed operator of
    :func:`specop.sparse.linalg._shift_invert.plan`, every pair checked against ``A`` itself.

    Tolerances. ``tol`` applies to the transformed pairs as in ARPACK (``||OP y - nu y|| <= tol |nu|``).
    An inner MINRES solve of ``(A - sigma I) x = v`` to relative residual ``eta`` perturbs each product
    of ``OP`` by up to ``eta |nu|_max ||v||`` and differently for every ``v`` (a Krylov solve is not
    linear in ``v``), so the Ritz residuals settle near ``eta |nu|_max``: the inner ``eta`` is
    ``tol / 10``, and ``tol`` is raised to ``INNER_FLOOR eps`` at least (1000 eps: an inner solve
    cannot reach the ``10 eps`` that ``tol = eps`` would ask of it). Whatever the inner solve did,
    each returned pair must then pass the check against the original problem,
    ``||A x - lambda M x|| <= 10 t (||A|| + max(|lambda|, |sigma|) ||M||) g ||x||`` with
    ``t = max(tol, 100 eps, 100 eps_OP ||OP|| / |nu|)`` (``||A||``, ``||M||``, ``||OP||`` from below by
    short Lanczos runs): eigsh's acceptance on OP, ``||OP y - nu y|| <= max(tol |nu|, 100 eps_OP ||OP||)``,
    implies ``||A x - lambda M x|| <= t ||A - sigma M|| g ||x||``, since ``S (OP x - nu x)`` is
    ``A x - lambda M x`` times ``-1/nu`` (normal: ``g = 1``) or ``1 - nu`` (buckling, cayley:
    ``g = |nu / (1 - nu)|``, which is ``|lambda / sigma|`` and ``|lambda + sigma| / (2 |sigma|)``, at least 1);
    the factor 10 allows for the norm estimates and the rounding of the back transformation. A pair that fails
    it is not returned: :class:`ArpackNoConvergence` is raised with the passing ones.
    """
    eps = float(np.finfo(backends.dtype_name(op.dtype)).eps)
    iterative = sigma is not None and OPinv is None and not backends.is_array(A) and not scipy.sparse.issparse(A)
    outer = max(tol, INNER_FLOOR * eps) if iterative else tol
    sig = None if sigma is None else float(np.real(sigma))
    Mop = None if M is None else as_operator(M, "eigsh")
    if Mop is not None and tuple(Mop.shape) != tuple(op.shape):
        raise ValueError(f"wrong M dimensions {tuple(Mop.shape)}, should be {tuple(op.shape)}")
    extra = ensure_symmetric(as_claimed_symmetric(op), "eigsh", "auto")
    if Mop is not None:
        extra += ensure_symmetric(as_claimed_symmetric(Mop), "eigsh: M", "auto")
    if M is not None and not (_stored(A) and _stored(M)) and not (backends.is_array(A) and backends.is_array(M)):
        # M given by its products (or A by its products with an M): B-inner-product Lanczos
        opm, bmul, solvers, wdt = operator_maps(op, Mop, Minv, sig, mode, OPinv, INNER_FLOOR * eps / 10)
        outer = max(tol, INNER_FLOOR * eps) if solvers else tol
        for s_ in solvers:
            s_.rtol = outer / 10
        n_ = op.shape[0]
        m_ = min(n_, ncv if ncv is not None else max(2 * k + 1, k + 30))
        with quiet() as caught:
            res: Any = b_lanczos(opm, bmul, n_, k, which, outer, m_, maxiter if maxiter is not None
                            else max(100, 10 * n_ // m_), v0, op.xp, op.device, wdt, rng)
        p = Plan(op, lambda X: backends.astype(X, op.dtype, op.xp), _ident, "standard" if sig is None else mode,
                 0.0 if sig is None else sig, bool(solvers), None)
        extra += res.b_products + sum(s_.inner_matvecs for s_ in solvers)
    else:
        p = plan(A, op, M, sig, mode, OPinv, outer / 10)
        y0 = None if v0 is None else op.xp.reshape(p.to_y(op.xp.reshape(v0, (-1, 1))), (-1,))
        with quiet() as caught:
            res = _eigsh(p.op, k, which=which, tol=outer, maxiter=maxiter, ncv=ncv, v0=y0, seed=rng,
                         check_symmetric=False)
    missed = [w for w in caught if str(w.message).startswith("InverseOperator")]  # inner solves: judged below
    caught = [w for w in caught if not str(w.message).startswith("InverseOperator")]
    xp = op.xp
    anorm = _norm_estimate(op)
    mnorm = 1.0 if Mop is None else _norm_estimate(Mop)

    def check(res: Any) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray, np.ndarray]:
        """``(lam, X, ||A x - lam M x||, scale, nu)`` of the transformed pairs of ``res``."""
        lam = back_transform(res.eigenvalues, p.mode, 0.0 if sig is None else sig)
        X = p.to_x(res.eigenvectors)
        L = to_backend(np.nan_to_num(lam, nan=0.0, posinf=0.0, neginf=0.0), op)
        R = op.matmat(X) - (X if Mop is None else Mop.matmat(X)) * xp.reshape(L, (1, -1))
        rn = backends.to_numpy(column_norms(xp, R)).astype(np.float64)
        xn = backends.to_numpy(column_norms(xp, X)).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):  # how the back transformation amplifies a residual
            gain = {"buckling": np.abs(lam) / abs(sig or 1.0),
                    "cayley": np.abs(lam + (sig or 0.0)) / (2 * abs(sig or 1.0))}.get(p.mode, np.ones_like(lam))
        scale = 10 * (anorm + np.maximum(np.abs(lam), abs(sig or 0.0)) * mnorm) * np.maximum(gain, 1.0) * xn
        return lam, X, rn, scale, np.abs(res.eigenvalues)

    lam, X, rn, scale, nu = check(res)
    # sigma at an eigenvalue to rounding: OP's huge |nu| raises eigsh's floor 100 eps ||OP|| past the
    # other pairs, accepted unresolved; recompute those on OP with the resolved pairs projected out
    strict = np.isfinite(lam) & (rn <= scale * max(outer, 100 * eps))
    if which == "LM" and sig is not None and not p.inexact and p.op is not op and strict.any() and not strict.all():
        with quiet() as again:
            res2 = deflated_rerun(p, res, np.flatnonzero(strict), k, which, outer, ncv, maxiter, rng)
        lam2, X2, rn2, scale2, nu2 = check(res2)
        if np.count_nonzero(np.isfinite(lam2) & (rn2 <= scale2 * max(outer, 100 * eps))) > strict.sum():
            res, lam, X, rn, scale, nu, caught = res2, lam2, X2, rn2, scale2, nu2, caught + again
    eps_op = float(np.finfo(backends.dtype_name(p.op.dtype)).eps)
    # an exact S^{-1} resolves OP's huge |nu| without blurring the rest: its floor may not excuse more than
    # sqrt(eps) (a pair still missing it, e.g. an explicit inverse of a near-singular S, is not returned)
    cap = math.sqrt(eps_op) if sig is not None and not p.inexact else math.inf

    def bounds(op_norm: float) -> np.ndarray:  # eigsh's acceptance on OP: rho <= max(tol |nu|, 100 eps ||OP||)
        with np.errstate(divide="ignore"):
            return scale * np.maximum(max(outer, 100 * eps), np.minimum(100 * eps_op * op_norm / nu, cap))

    bound = bounds(float(nu.max()))
    if not np.all(rn <= bound):  # ||OP|| from below by its largest wanted |nu| was too strict: estimate it
        bound = bounds(max(float(nu.max()), _norm_estimate(p.op) if p.op is not op else 0.0))
    ok = np.isfinite(lam) & (rn <= bound)
    if not res.converged:
        ok &= _converged_mask(res.eigenvalues, res.residual_norms, outer, op.dtype)
    products = res.matvecs + extra + (0 if p.inverse is None else p.inverse.inner_matvecs)
    if not ok.all():
        raise ArpackNoConvergence(f"No convergence ({res.restarts} restarts of specop's thick-restart Lanczos on the "
                                  f"{p.mode} transformation, {products} products with A, {int(ok.sum())}/{k} pairs "
                                  f"pass the residual check ||A x - lambda M x|| <= bound: residuals "
                                  f"{np.array2string(rn, precision=2)}, bounds {np.array2string(bound, precision=2)}"
                                  + (f"; {len(missed)} inner MINRES solves missed their tolerance: pass OPinv = "
                                     "(A - sigma I)^-1 or a larger tol" if missed else "") + ")",
                                  to_backend(lam[ok], op), _columns(op, X, np.flatnonzero(ok)), res)
    reemit(caught)
    order = np.argsort(lam, kind="stable") if (vectors or sigma is not None) else value_order(lam, which)
    w = to_backend(lam[order], op)
    return (w, _columns(op, X, order)) if vectors else w


def svds(A: Any, k: int = 6, ncv: int | None = None, tol: float = 0, which: str = "LM", v0: Any = None,
         maxiter: int | None = None, return_singular_vectors: bool | str = True, solver: str = "arpack",
         rng: Any = None, options: dict | None = None, *, random_state: Any = None) -> Any:
    """``k`` largest or smallest singular triplets: :func:`scipy.sparse.linalg.svds` on any backend.

    Every ``solver`` runs :func:`specop.svds` (thick-restart Golub-Kahan-Lanczos
    bidiagonalization); ``solver`` sets what scipy's choice sets in the interface (``"propack"``
    allows ``k = min(A.shape)`` and takes ``v0`` of shape ``(m,)``). Solver ``options``
    raise :class:`NotImplementedError`.

    Returns
    -------
    u : array, shape (m, k), or None
    s : array, shape (k,)
        Ascending, in ``A``'s dtype on its backend.
    vh : array, shape (k, n), or None
        As scipy: ``s`` alone for ``return_singular_vectors=False``; ``u`` or ``vh`` None for "vh"/"u".
    """
    solver = str(solver).lower()
    solvers = {"arpack", "lobpcg", "propack"}
    if solver not in solvers:
        raise ValueError(f"solver must be one of {solvers}.")
    if options:
        raise NotImplementedError(f"options: specop.sparse.linalg.svds runs specop's own bidiagonalization for every "
                                  f"solver and takes no {solver} options, got {options!r}")
    op = as_operator(A, "svds")
    m, n = op.shape
    kmax = min(m, n) if solver == "propack" else min(m, n) - 1
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or int(k) != k or not 0 < k <= kmax:
        raise ValueError("`k` must be an integer satisfying `0 < k < min(A.shape)`.")
    k = int(k)
    if solver == "arpack" and ncv is not None and (int(ncv) != ncv or not k < ncv < min(m, n)):
        raise ValueError("`ncv` must be an integer satisfying `k < ncv < min(A.shape)`.")
    if tol < 0 or not math.isfinite(tol):
        raise ValueError("`tol` must be a non-negative floating point value.")
    which = str(which).upper()
    if which not in {"LM", "SM"}:
        raise ValueError(f"`which` must be in {({'LM', 'SM'})}.")
    if maxiter is not None and (int(maxiter) != maxiter or maxiter <= 0):
        raise ValueError("`maxiter` must be a positive integer.")
    if return_singular_vectors not in {True, False, "vh", "u"}:
        raise ValueError(f"`return_singular_vectors` must be in {({True, False, 'vh', 'u'})}.")
    if v0 is not None:
        want = (m,) if solver == "propack" else (min(m, n),)
        if not backends.is_array(v0) or tuple(v0.shape) != want:
            raise ValueError(f"`v0` must have shape {want}.")
        if solver == "propack" and m > n:  # PROPACK's v0 is a left vector: start from A^T v0
            v0 = op.rmatvec(v0)
    seed = rng if rng is not None else random_state
    tol_eff = float(np.finfo(backends.dtype_name(op.dtype)).eps) if tol == 0 else float(tol)
    with quiet() as caught:
        res = _svds(op, k, which=which, tol=tol_eff, maxiter=maxiter, ncv=None if ncv is None else int(ncv),
                    v0=v0, seed=seed, return_singular_vectors=return_singular_vectors)
    s = to_backend(res.singular_values, op)
    if not res.converged:
        ok = _converged_mask(res.singular_values, res.residual_norms, tol_eff, op.dtype)
        right = None if res.vh is None else _columns(op, res.vh.T, np.flatnonzero(ok))
        raise ArpackNoConvergence(f"No convergence ({res.restarts} restarts of specop's Golub-Kahan-Lanczos, "
                                  f"{res.matvecs + res.rmatvecs} products, {int(ok.sum())}/{k} singular triplets "
                                  f"converged to tol = {tol_eff:.1e})", to_backend(res.singular_values[ok], op),
                                  right, res)
    reemit(caught)
    if return_singular_vectors is False:
        return s
    return res.u, s, res.vh


def lobpcg(A: Any, X: Any, B: Any = None, M: Any = None, Y: Any = None, tol: float | None = None,
           maxiter: int | None = None, largest: bool = True, verbosityLevel: int = 0,
           retLambdaHistory: bool = False, retResidualNormsHistory: bool = False,
           restartControl: int = 20) -> tuple:
    """:func:`scipy.sparse.linalg.lobpcg` on :func:`specop.lobpcg` (same arguments, same return tuple).

    The eigenvalues are an array of ``X``'s backend and dtype; a run that misses ``tol`` warns
    (:class:`~specop.ConvergenceWarning`, a ``UserWarning`` in scipy) and returns its best pairs.
    """
    if any(x is not None and is_complex(x) for x in (A, X, B, M)):
        raise not_yet("lobpcg: A", "a complex Hermitian problem")
    op = as_operator(A, "lobpcg")
    res = _lobpcg(op, X, B=B, M=M, Y=Y, tol=tol, maxiter=maxiter, largest=largest, verbosityLevel=verbosityLevel,
                  retLambdaHistory=retLambdaHistory, retResidualNormsHistory=retResidualNormsHistory,
                  restartControl=restartControl)
    out: tuple = (to_backend(res.eigenvalues, op, res.eigenvectors.dtype), res.eigenvectors)
    if retLambdaHistory:
        out += (res.lambda_history,)
    if retResidualNormsHistory:
        out += (res.residual_norms_history,)
    return out

