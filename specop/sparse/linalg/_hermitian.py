"""Complex Hermitian ``eigsh`` through the real symmetric embedding, on every backend with complex dtypes.

A Hermitian ``H = H_r + i H_i`` (``H_r`` symmetric, ``H_i`` antisymmetric) acts on ``z = x + i y``
as the real symmetric matrix of twice the size (Golub & Van Loan, *Matrix Computations*, 4th ed.,
section 8.7, the "realification" of a Hermitian problem; Bai et al., *Templates for the Solution
of Algebraic Eigenvalue Problems*, SIAM 2000, section 4.1)::

    K = [[H_r, -H_i],          K [x; y] = lambda [x; y]  <=>  H (x + i y) = lambda (x + i y),
         [H_i,  H_r]]

and every eigenvalue of ``H`` is an eigenvalue of ``K`` twice (``[x; y]`` and ``[-y; x]``, i.e.
``z`` and ``i z``). The embedding is a ring homomorphism, so ``M``, ``OPinv`` and ``A - sigma M``
embed the same way and every mode of :mod:`specop.sparse.linalg._shift_invert` applies unchanged.
``eigsh`` runs specop's real eigsh on ``K`` for ``2 k`` pairs (its multiplicity check finds the
second copy of each), maps the ``2 k`` real vectors to complex ones (a space of complex dimension
``k``), and ends with a Rayleigh-Ritz step of ``H`` (and ``M``) on an orthonormal basis of that space
(``k`` more products), so the eigenvectors are complex, orthonormal (``M``-orthonormal) and exact
for ``H`` itself; each pair is checked against ``H`` once more.

Cost: about twice the products of a Lanczos run in complex arithmetic (the doubled eigenvalues);
a complex recurrence in :mod:`specop.linalg.thick_restart` would save them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

from specop import backends
from specop.linalg._which import wanted
from specop.operators import FunctionOperator
from specop.sparse.linalg._convert import value_order

__all__ = ["embed", "real_dtype_name", "to_complex_columns", "embed_vector"]


def real_dtype_name(dtype: Any) -> str:
    """``"float32"`` for complex64, ``"float64"`` for complex128 (numpy, backend or scipy dtypes)."""
    name = backends.dtype_name(dtype) if not isinstance(dtype, np.dtype) else dtype.name
    return "float32" if name in ("complex64", "float32") else "float64"


def embed(X: Any) -> Any:
    """The real embedding ``[[Re X, -Im X], [Im X, Re X]]`` of a complex (or real) matrix or operator.

    A numpy array gives a numpy array, a scipy sparse matrix a sparse one, a backend array an
    array of that backend; a scipy or specop operator a specop operator on numpy whose products
    call ``X`` on complex vectors.
    """
    if scipy.sparse.issparse(X):
        re, im = X.real, X.imag
        return scipy.sparse.csr_array(scipy.sparse.block_array([[re, -im], [im, re]]))
    if isinstance(X, np.ndarray):
        re, im = X.real, X.imag
        return np.block([[re, -im], [im, re]])
    if backends.is_array(X):
        xp = backends.namespace_of(X)
        if not backends.dtype_name(X.dtype).startswith("complex"):  # a real M of a complex problem
            return xp.concat([xp.concat([X, xp.zeros_like(X)], axis=1), xp.concat([xp.zeros_like(X), X], axis=1)],
                             axis=0)
        re, im = xp.real(X), xp.imag(X)
        return xp.concat([xp.concat([re, -im], axis=1), xp.concat([im, re], axis=1)], axis=0)
    op = spla.aslinearoperator(X)
    n = op.shape[0]
    rdt = np.dtype(real_dtype_name(np.dtype(op.dtype)))

    def matmat(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V)
        W = np.asarray(op.matmat(V[:n] + 1j * V[n:]))
        return np.concatenate([W.real, W.imag], axis=0).astype(rdt)

    return FunctionOperator(lambda v: matmat(v[:, None])[:, 0], (2 * n, 2 * n), rdt.name, like=np.zeros(1),
                            symmetric=True, matmat=matmat)


def embed_vector(v: Any) -> Any:
    """``[Re v; Im v]`` of a vector of any backend (a real one gets a zero imaginary half)."""
    if isinstance(v, np.ndarray) or not backends.is_array(v):
        v = np.asarray(v)
        return np.concatenate([v.real, v.imag]).astype(real_dtype_name(v.dtype))
    xp = backends.namespace_of(v)
    if backends.dtype_name(v.dtype).startswith("complex"):
        return xp.concat([xp.real(v), xp.imag(v)])
    return xp.concat([v, xp.zeros_like(v)])


def to_complex_columns(U: Any, n: int, complex_like: Any) -> Any:
    """``U[:n] + i U[n:]``: real embedded vectors (columns) as complex vectors of ``complex_like``'s dtype."""
    if isinstance(U, np.ndarray):
        return (U[:n] + 1j * U[n:]).astype(np.dtype(complex_like))
    xp = backends.namespace_of(U)
    re, im = xp.astype(U[:n, ...], complex_like), xp.astype(U[n:, ...], complex_like)
    return re + im * 1j


def _apply(X: Any, Z: Any) -> Any:
    """``X @ Z`` for a complex matrix, sparse matrix or operator ``X`` (None: the identity)."""
    if X is None:
        return Z
    if backends.is_array(X) and not isinstance(X, np.ndarray):
        xp = backends.namespace_of(X)
        return (X if X.dtype == Z.dtype else xp.astype(X, Z.dtype)) @ Z  # a real M of a complex problem
    if scipy.sparse.issparse(X) or backends.is_array(X):
        return X @ Z
    return spla.aslinearoperator(X).matmat(Z)


def _host(X: Any) -> np.ndarray:
    return np.asarray(backends.to_numpy(X))


def hermitian_eigsh(eigsh: Any, no_convergence: Any, A: Any, k: int, M: Any, sigma: Any, which: str, v0: Any,
                    ncv: int | None, maxiter: int | None, tol: float, vectors: bool, OPinv: Any, mode: str,
                    rng: Any) -> Any:
    """scipy's ``eigsh`` of a complex Hermitian ``A`` (``M`` Hermitian positive definite or real SPD).

    ``eigsh`` is :func:`specop.sparse.linalg.eigsh` (run on the real embedding), ``no_convergence``
    its exception class. Returns real eigenvalues (float32 for complex64) and complex eigenvectors
    of ``A``'s backend, as scipy.
    """
    n = A.shape[0]
    cplx = next(X.dtype for X in (A, M) if X is not None and getattr(X, "dtype", None) is not None
                and "complex" in str(X.dtype))
    on_backend = backends.is_array(A) and not isinstance(A, np.ndarray)
    xp: Any = backends.namespace_of(A) if on_backend else None
    rname = real_dtype_name(cplx)
    ncv2 = None if ncv is None else min(2 * int(ncv), 2 * n)
    v2 = None if v0 is None else embed_vector(v0 if not backends.is_array(v0) else
                                              backends.namespace_of(v0).reshape(v0, (-1,)))
    KM = None if M is None else embed(M)
    KO = None if OPinv is None else embed(OPinv)
    try:
        w, U = eigsh(embed(A), min(2 * k, 2 * n), KM, sigma, which, v2, ncv2, maxiter, tol, True, None, KO, mode, rng)
    except no_convergence as err:
        raise no_convergence(f"{err} (complex Hermitian A: the real embedding of size 2n = {2 * n}, "
                             f"2k = {2 * k} pairs; no partial complex pairs)", np.zeros(0), None) from err
    Z = to_complex_columns(U, n, cplx if on_backend else np.dtype(cplx))
    MZ = _apply(M, Z)
    G = _host(Z.conj().T @ MZ if not on_backend else xp.conj(xp.matrix_transpose(Z)) @ MZ).astype(np.complex128)
    s, V = np.linalg.eigh((G + G.conj().T) / 2)
    # the 2k real vectors span r <= 2k complex directions (z and i z from one eigenvalue's two copies; a copy
    # missed gives r > k): Rayleigh-Ritz on all r of them, then the k wanted among the r Ritz pairs
    keep = np.flatnonzero(s > np.sqrt(float(np.finfo(rname).eps)) * s.max())
    if keep.size < k:
        raise no_convergence(f"No convergence: the 2k = {2 * k} eigenvectors of the real embedding span "
                             f"{keep.size} < k = {k} complex directions", np.zeros(0), None)
    C = V[:, keep] / np.sqrt(s[keep])
    Cb = C.astype(np.dtype(cplx)) if not on_backend else backends.from_numpy(C, xp, backends.device_of(A), cplx)
    Q = Z @ Cb
    AQ, MQ = _apply(A, Q), _apply(M, Q)
    QH = Q.conj().T if not on_backend else xp.conj(xp.matrix_transpose(Q))
    Ah, Mh = _host(QH @ AQ).astype(np.complex128), _host(QH @ MQ).astype(np.complex128)
    lam, Y = scipy.linalg.eigh((Ah + Ah.conj().T) / 2, (Mh + Mh.conj().T) / 2)
    pick = np.sort(wanted(_nu(lam, sigma, mode), k, which))
    lam, Y = lam[pick], Y[:, pick]
    Yb = Y.astype(np.dtype(cplx)) if not on_backend else backends.from_numpy(Y, xp, backends.device_of(A), cplx)
    X = Q @ Yb
    # the check against A itself: X = Z (C Y) combines the embedded pairs (z_j, w_j), each checked against the
    # embedding by eigsh; so ||A x - lambda M x|| <= 2 ||(C Y)_j||_1 max_j ||A z_j - w_j M z_j|| + rounding
    wh = _host(w).astype(np.float64)
    r_emb = np.linalg.norm(_host(_apply(A, Z)) - _host(MZ) * wh, axis=0)
    R = _host(AQ) @ Y - (_host(MQ) @ Y) * lam
    rn, xn = np.linalg.norm(R, axis=0), np.linalg.norm(_host(X), axis=0)
    eps = float(np.finfo(rname).eps)
    mnorm = 1.0 if M is None else float(np.linalg.norm(Mh, 2))
    top = float(np.abs(wh).max()) + (0.0 if sigma is None else abs(float(np.real(sigma))))
    bound = 2 * np.abs(C @ Y).sum(axis=0) * r_emb.max() + 100 * eps * (top + np.abs(lam) * mnorm) * xn
    if not np.all(rn <= bound):
        raise no_convergence(f"No convergence: complex Hermitian Rayleigh-Ritz residuals "
                             f"{np.array2string(rn, precision=2)} exceed {np.array2string(bound, precision=2)}",
                             np.zeros(0), None)
    order = np.argsort(lam, kind="stable") if (vectors or sigma is not None) else value_order(lam, which)
    lam = lam[order]
    if on_backend:
        w_out = backends.from_numpy(lam, xp, backends.device_of(A), backends.float_dtype(xp, rname))
        X = xp.take(X, backends.from_numpy(order.astype(np.int64), xp, backends.device_of(A)), axis=1)
    else:
        w_out, X = lam.astype(rname), X[:, order]
    return (w_out, X) if vectors else w_out


def _nu(lam: np.ndarray, sigma: Any, mode: str) -> np.ndarray:
    """The eigenvalues of ARPACK's operator that ``which`` ranks (see ``_shift_invert``)."""
    if sigma is None:
        return lam
    s = float(np.real(sigma))
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "normal":
            return 1.0 / (lam - s)
        if mode == "buckling":
            return lam / (lam - s)
        return (lam + s) / (lam - s)
