"""Spectral transformations of scipy's ``eigsh``: shift-invert (``sigma``, modes normal/buckling/cayley)
and the generalized problem ``A x = lambda M x``, all reduced to one standard symmetric problem.

ARPACK's modes (Lehoucq, Sorensen & Yang, *ARPACK Users' Guide*, SIAM 1998, section 3.2 and
table 3.1; scipy's ``eigsh`` docstring) iterate on an operator ``OP`` that is self-adjoint in
the ``B``-inner product, ``B = M`` (modes 2, 3, 5) or ``B = A`` (mode 4, buckling)::

    mode 2 (sigma None, M):  OP = M^{-1} A,                    nu = lambda
    mode 3 (normal):          OP = (A - sigma M)^{-1} M,         nu = 1 / (lambda - sigma)
    mode 4 (buckling):        OP = (A - sigma M)^{-1} A,         nu = lambda / (lambda - sigma)
    mode 5 (cayley):          OP = (A - sigma M)^{-1} (A + sigma M),  nu = (lambda + sigma) / (lambda - sigma)

With a Cholesky factor ``B = G G^T`` each becomes an ordinary symmetric operator on
``y = G^T x`` (the "Cholesky transformation", Ericsson & Ruhe, Math. Comp. 35, 1980; Golub &
Van Loan, *Matrix Computations*, 4th ed., section 8.7.2): with ``S = A - sigma M`` and
``W = G^T S^{-1} G``, mode 2 is ``G^{-1} A G^{-T}``, mode 3 and mode 4 (``G`` from ``A``) are
``W``, and mode 5 is ``I + 2 sigma W``; without ``M`` (``G = I``), buckling is ``I + sigma S^{-1}``
(``S^{-1}`` and ``A`` commute). specop's thick-restart Lanczos computes the pairs ``(nu, y)``
that ``which`` asks for; ``x = G^{-T} y`` is ``B``-orthonormal as ARPACK's vectors are.

``S^{-1}`` and ``G`` come from exact factorizations where the matrices are stored: LU of
``S`` (``scipy.linalg.lu_factor``, or ``scipy.sparse.linalg.splu`` for a sparse one) and a
dense Cholesky factor of ``B`` on numpy; the explicit inverse and Cholesky factor of the
backend's ``linalg`` for a dense torch/JAX/CuPy/array-api array. An operator ``A`` given only
by its products gets ``S^{-1}`` from an inner MINRES solve (``specop.InverseOperator``,
``method="minres"``: ``S`` is indefinite for a ``sigma`` inside the spectrum) or from the
user's ``OPinv``; an ``M`` given by its products goes to :mod:`specop.sparse.linalg._generalized`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

from specop import backends
from specop.operators import FunctionOperator
from specop.operators import LinearOperator as _Base
from specop.sparse.linalg._convert import not_yet, user_inverse

__all__ = ["Plan", "plan", "back_transform", "deflated_rerun", "INNER_FLOOR"]

Map = Callable[[Any], Any]

#: With an inner iterative solve the outer tolerance is at least ``INNER_FLOOR`` eps (the
#: inner solve must be ten times tighter, and MINRES's residual cannot go much below ``10 eps``).
INNER_FLOOR = 1000.0


def _identity(X: Any) -> Any:
    return X


@dataclass(frozen=True)
class Plan:
    """One standard symmetric problem ``op`` whose eigenpairs ``(nu, y)`` give those of the original.

    ``to_x`` maps ``y`` (columns) to ``x = G^{-T} y``; ``to_y`` maps a start vector the other way
    (``G^T v0``); ``mode`` is "standard" (sigma None) or scipy's mode name; ``inexact`` says that
    ``S^{-1}`` is an inner iterative solve.
    """

    op: _Base
    to_x: Map
    to_y: Map
    mode: str
    sigma: float
    inexact: bool
    inverse: Any = None  # the InverseOperator of an inner solve (its matvec counts), or None


def back_transform(nu: np.ndarray, mode: str, sigma: float) -> np.ndarray:
    """``lambda`` from the eigenvalue ``nu`` of the transformed operator (see the module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "standard":
            return nu
        if mode == "normal":
            return sigma + 1.0 / nu
        if mode == "buckling":
            return sigma * nu / (nu - 1.0)
        return sigma * (nu + 1.0) / (nu - 1.0)  # cayley


def _is_stored_numpy(X: Any) -> bool:
    return scipy.sparse.issparse(X) or isinstance(X, np.ndarray)


def _numpy_dense(X: Any, name: str) -> np.ndarray:
    return (X.toarray() if scipy.sparse.issparse(X) else np.asarray(X)).astype(np.float64)


def _cholesky_numpy(B: Any, name: str, why: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(_numpy_dense(B, name))
    except np.linalg.LinAlgError as err:
        raise ValueError(f"eigsh: {name} must be symmetric positive definite ({why}); its Cholesky "
                         f"factorization failed: {err}") from err


def _shifted_inverse_numpy(A: Any, M: Any, sigma: float) -> Map:
    """``X -> (A - sigma M)^{-1} X`` by an exact LU factorization (dense or sparse)."""
    n = A.shape[0]
    if scipy.sparse.issparse(A) or scipy.sparse.issparse(M):
        I = scipy.sparse.identity(n, format="csc") if M is None else scipy.sparse.csc_array(M)
        S = scipy.sparse.csc_array(A, dtype=np.float64) - sigma * I
        try:
            lu = spla.splu(S.astype(np.float64))
        except RuntimeError as err:
            raise ValueError(f"eigsh: sigma = {sigma!r}: A - sigma M is singular ({err}); "
                             "sigma is an eigenvalue: move it slightly") from err
        return lambda X: lu.solve(np.asarray(X, dtype=np.float64))
    S = np.asarray(A, dtype=np.float64) - sigma * (np.eye(n) if M is None else _numpy_dense(M, "M"))
    with warnings.catch_warnings():  # an exactly singular S is refused below, naming sigma
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(S, check_finite=True)
    if not np.all(np.abs(np.diag(lu)) > 0):
        raise ValueError(f"eigsh: sigma = {sigma!r}: A - sigma M is exactly singular; sigma is an eigenvalue: "
                         "move it slightly")
    return lambda X: scipy.linalg.lu_solve((lu, piv), np.asarray(X, dtype=np.float64))


def _numpy_maps(A: Any, M: Any, sigma: float | None, mode: str) -> tuple[Any, ...]:
    """``(A, G, G^T, G^{-1}, G^{-T})`` products and ``S^{-1}`` (None without sigma) on numpy."""
    Ad = A if scipy.sparse.issparse(A) else np.asarray(A, dtype=np.float64)

    def a_map(X: Any) -> Any:
        return np.asarray(Ad @ X, dtype=np.float64)

    B = A if mode == "buckling" and M is not None else M
    if B is None:
        g = gt = gi = git = _identity
    else:
        G = _cholesky_numpy(B, "A" if B is A else "M", "buckling whitens by A" if B is A else "the generalized problem")

        def g(X: Any) -> Any:
            return G @ X

        def gt(X: Any) -> Any:
            return G.T @ X

        def gi(X: Any) -> Any:
            return scipy.linalg.solve_triangular(G, X, lower=True)

        def git(X: Any) -> Any:
            return scipy.linalg.solve_triangular(G, X, lower=True, trans="T")

    sinv = None if sigma is None else _shifted_inverse_numpy(A, M, sigma)
    return a_map, g, gt, gi, git, sinv


def _dense_maps(A: Any, M: Any, sigma: float | None, mode: str) -> tuple:
    """The same maps for a dense array of any backend, from its ``linalg`` (explicit inverses)."""
    xp = backends.namespace_of(A)
    dt = backends.promote_dtype(xp, A.dtype)
    Ad = xp.astype(A, dt)
    Md = None if M is None else xp.astype(M, dt)
    n = A.shape[0]
    B = Ad if mode == "buckling" and Md is not None else Md
    if B is None:
        g = gt = gi = git = _identity
    else:
        G = xp.linalg.cholesky(B)
        if not bool(xp.all(xp.isfinite(G))):
            raise ValueError(f"eigsh: {'A' if B is Ad else 'M'} must be symmetric positive definite; its Cholesky "
                             "factorization failed")
        Gi = xp.linalg.inv(G)
        g, gt = (lambda X: G @ X), (lambda X: G.T @ X)
        gi, git = (lambda X: Gi @ X), (lambda X: Gi.T @ X)
    sinv = None
    if sigma is not None:
        eye = backends.eye(xp, n, dt, backends.device_of(A))
        S = Ad - sigma * (eye if Md is None else Md)
        Si = xp.linalg.inv(S)
        if not bool(xp.all(xp.isfinite(Si))):
            raise ValueError(f"eigsh: sigma = {sigma!r}: A - sigma M is singular; sigma is an eigenvalue: "
                             "move it slightly")
        sinv = lambda X: Si @ X  # noqa: E731
    return (lambda X: Ad @ X), g, gt, gi, git, sinv


def plan(A: Any, op: _Base, M: Any, sigma: float | None, mode: str, OPinv: Any, inner_rtol: float) -> Plan:
    """The standard symmetric problem for ``eigsh(A, M=M, sigma=sigma, mode=mode, OPinv=OPinv)``.

    ``op`` is ``A`` as a specop operator; ``inner_rtol`` the relative residual of an inner MINRES
    solve (used only when ``A`` is given by its products and ``OPinv`` is None).
    """
    from specop.linalg.inverse import InverseOperator

    xp, dev, n = op.xp, op.device, op.shape[0]
    dt = backends.promote_dtype(xp, op.dtype)
    inverse = None
    if _is_stored_numpy(A) and (M is None or _is_stored_numpy(M)):
        a_map, g, gt, gi, git, sinv = _numpy_maps(A, M, sigma, mode)
        on_host = True
    elif backends.is_array(A) and (M is None or backends.is_array(M)):
        if M is not None and backends.backend_name(M) != backends.backend_name(A):
            raise TypeError(f"eigsh: A is a {backends.backend_name(A)} array but M is a {backends.backend_name(M)} "
                            "array")
        a_map, g, gt, gi, git, sinv = _dense_maps(A, M, sigma, mode)
        on_host = False
    else:
        if M is not None:
            raise not_yet("eigsh: M", f"an M given by its products only ({type(M).__name__}; B-inner-product "
                          "Lanczos with Minv or an inner CG solve on M)")
        a_map, g, gt, gi, git = _in(op, dt), _identity, _identity, _identity, _identity
        sinv, on_host = None, False
        if sigma is not None and OPinv is None:
            # an inner solve that misses rtol (rounding of float32 products) returns its iterate: the
            # residual check of every returned pair against A decides (specop.sparse.linalg._eigen)
            inverse = InverseOperator(op, damping=-float(sigma), method="minres", rtol=inner_rtol,
                                      maxiter=max(10 * n, 100), on_failure="warn",
                                      check_symmetric=False)  # eigsh's own check of A decided
            sinv = _in(inverse, dt)
    if OPinv is not None:  # the user's (A - sigma M)^{-1}
        user = user_inverse(OPinv, "OPinv", n)
        sinv = _host(user) if on_host else _in(user, dt)

    if sigma is None:
        def core(Y: Any) -> Any:
            return gi(a_map(git(Y)))
    elif mode == "cayley":
        def core(Y: Any) -> Any:
            return Y + (2.0 * sigma) * gt(sinv(g(Y)))
    elif mode == "buckling" and M is None:
        def core(Y: Any) -> Any:
            return Y + sigma * sinv(Y)
    else:  # normal; buckling with M (G from A)
        def core(Y: Any) -> Any:
            return gt(sinv(g(Y)))

    def matmat(Y: Any) -> Any:
        if on_host:
            Z = core(np.asarray(backends.to_numpy(Y), dtype=np.float64))
            return backends.from_numpy(np.asarray(Z), xp, dev, dt)
        return backends.astype(core(backends.astype(Y, dt, xp)), dt, xp)

    def matvec(y: Any) -> Any:
        return xp.reshape(matmat(xp.reshape(y, (n, 1))), (n,))

    def convert(f: Map, out: Any) -> Map:
        def apply(Y: Any) -> Any:
            if on_host:
                return backends.from_numpy(np.asarray(f(np.asarray(backends.to_numpy(Y), dtype=np.float64))),
                                           xp, dev, out)
            return backends.astype(f(backends.astype(Y, dt, xp)), out, xp)
        return apply

    # the transformed operator works in float64 where the backend has it, whatever A's dtype: its
    # factorizations are float64, and a float32 OP would resolve a pair with a small |nu| only to
    # eps32 |nu|_max (amplified by |nu|_max / |nu| in the back transformation)
    T = FunctionOperator(matvec, (n, n), dt, like=op, symmetric=True, matmat=matmat, device=dev)
    return Plan(T, convert(git, op.dtype), convert(gt, dt), "standard" if sigma is None else mode,
                0.0 if sigma is None else float(sigma), inverse is not None, inverse)


def _in(B: _Base, dt: Any) -> Map:
    """``X -> B X`` for ``X`` in the working dtype ``dt`` (the product itself in ``B``'s dtype)."""
    return lambda X: backends.astype(B.matmat(backends.astype(X, B.dtype, B.xp)), dt, B.xp)


def _host(B: _Base) -> Map:
    """``X -> B X`` for a host float64 ``X`` (a user's OPinv of a numpy problem, of any backend)."""
    def apply(X: Any) -> Any:
        Y = B.matmat(backends.from_numpy(np.ascontiguousarray(X), B.xp, B.device, B.dtype))
        return np.asarray(backends.to_numpy(Y), dtype=np.float64)
    return apply


class _Deflated(_Base):
    """``P OP P`` with ``P = I - Y Y^T`` for orthonormal columns ``Y`` (eigenvectors of ``OP`` already resolved).

    Near-singular ``A - sigma M`` (``sigma`` at an eigenvalue to rounding) gives ``OP`` a huge ``|nu|``
    whose ``100 eps ||OP||`` acceptance floor passes every smaller pair unresolved; with those
    eigenvectors projected out the remaining pairs meet their tolerance (Saad, *Numerical Methods
    for Large Eigenvalue Problems*, 2nd ed., SIAM 2011, section 4.2, Wielandt/projection deflation).
    """

    def __init__(self, op: _Base, Y: Any) -> None:
        self.op, self.Y = op, Y
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=True)

    def _project(self, V: Any) -> Any:
        return V - self.Y @ (self.Y.T @ V)

    def _matmat(self, V: Any) -> Any:
        return self._project(self.op.matmat(self._project(V)))


def deflated_rerun(p: Plan, res: Any, keep: np.ndarray, k: int, which: str, tol: float, ncv: int | None,
                   maxiter: int | None, seed: Any) -> Any:
    """``res`` with the pairs outside ``keep`` recomputed on ``OP`` deflated by the pairs ``keep``.

    The kept pairs and the new ones form one result (values, vectors, residuals, products, restarts).
    """
    from dataclasses import replace

    from specop.linalg import eigsh as _eigsh

    xp, op = p.op.xp, p.op
    idx = backends.from_numpy(keep.astype(np.int64), xp, op.device)
    Y = xp.take(res.eigenvectors, idx, axis=1)
    k2 = k - keep.size
    sub = _eigsh(_Deflated(op, Y), k2, which=which, tol=tol, maxiter=maxiter,
                 ncv=None if ncv is None else max(min(ncv, op.shape[0] - keep.size), k2 + 1), seed=seed,
                 check_symmetric=False)
    return replace(res, eigenvalues=np.concatenate([res.eigenvalues[keep], sub.eigenvalues]),
                   eigenvectors=xp.concat([Y, sub.eigenvectors], axis=1),
                   residual_norms=np.concatenate([res.residual_norms[keep], sub.residual_norms]),
                   matvecs=res.matvecs + sub.matvecs, converged=res.converged and sub.converged,
                   restarts=res.restarts + sub.restarts)
