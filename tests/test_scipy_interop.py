"""Both directions between specop and scipy.sparse.linalg, checked against dense numpy.

``op.to_scipy()`` must be accepted by eigsh, cg, minres, lobpcg and expm_multiply and give
the dense answers; scipy sparse matrices/arrays and scipy LinearOperators must become
specop operators with the right products and symmetry flag.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla
from hypothesis import strategies as st
from test_operators_strategies import Case, assert_close, eps, fro, matrices, run

import specop
import specop.sparse.linalg as ssl


@st.composite
def spectra(draw, *, definite: bool, top_gap: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """``(A, eigenvalues, seed)``: ``A = Q diag(d) Q^T`` float64 with ``1 <= |d| <= 10``.

    ``top_gap``: the three largest eigenvalues are moved to about 20, 25, 30 (fast block methods).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(16, 40))
    rng = np.random.default_rng(seed)
    d = rng.uniform(1.0, 10.0, n)
    if not definite:
        d *= rng.choice([-1.0, 1.0], n)
    if top_gap:
        d[:3] = np.array([20.0, 25.0, 30.0]) + rng.uniform(-1.0, 1.0, 3)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    return A, np.linalg.eigvalsh(A), seed


def view(backend, A: np.ndarray, dtype: str = "float64") -> spla.LinearOperator:
    return specop.DenseOperator(backend.asarray(A, dtype)).to_scipy()


def test_to_scipy_products_match_dense(backend):
    def prop(case: Case):
        S = view(backend, case.A, case.dtype)
        assert isinstance(S, spla.LinearOperator)
        assert S.shape == case.A.shape and S.dtype == np.dtype(case.dtype)
        m, n = case.A.shape
        x, X, y = case.vectors(n), case.vectors(n, 3, salt=2), case.vectors(m, salt=3)
        kw = {"dtype": case.dtype}
        assert_close(S @ x, case.A @ x, n=n, scale=fro(case.A) * fro(x), what="S @ x", **kw)
        assert_close(S.matmat(X), case.A @ X, n=n, scale=fro(case.A) * fro(X), what="S.matmat", **kw)
        assert_close(S.rmatvec(y), case.A.T @ y, n=m, scale=fro(case.A) * fro(y), what="S.rmatvec", **kw)
        assert_close(S.T @ y, case.A.T @ y, n=m, scale=fro(case.A) * fro(y), what="S.T @ y", **kw)

    run(backend, prop, matrices())


def test_to_scipy_eigsh_matches_dense(backend):
    def prop(case: Case):
        n = case.A.shape[0]
        v0 = case.rng().standard_normal(n).astype(case.dtype)
        w = spla.eigsh(view(backend, case.A, case.dtype), k=3, which="LA", v0=v0, return_eigenvectors=False)
        want = np.linalg.eigvalsh(case.A)[-3:]
        # Weyl: a backward error of n * eps * ||A|| moves every eigenvalue by at most that much
        assert_close(np.sort(w), want, dtype=case.dtype, n=n, scale=fro(case.A), what="eigsh")

    run(backend, prop, matrices(symmetric=True, min_size=5, structures=("gaussian", "integer", "wide_range")))


def test_to_scipy_cg_solves_spd(backend):
    def prop(sp):
        A, d, seed = sp
        b = np.random.default_rng(seed).standard_normal(A.shape[0])
        rtol = 100 * A.shape[0] * eps("float64")
        x, info = spla.cg(view(backend, A), b, rtol=rtol, maxiter=10 * A.shape[0])
        assert info == 0
        # cg's stopping test on the recursive residual; the true residual adds n*eps*||A|| ||x||
        res = np.linalg.norm(A @ x - b)
        assert res <= 2 * rtol * np.linalg.norm(b) + A.shape[0] * eps("float64") * d[-1] * np.linalg.norm(x)

    run(backend, prop, spectra(definite=True))


def test_to_scipy_minres_solves_indefinite(backend):
    def prop(sp):
        A, d, seed = sp
        b = np.random.default_rng(seed).standard_normal(A.shape[0])
        rtol = 100 * A.shape[0] * eps("float64")
        x, info = spla.minres(view(backend, A), b, rtol=rtol, maxiter=10 * A.shape[0])
        assert info == 0
        # minres stops at ||r|| <= rtol (Anorm ||x|| + ||b||), its Anorm estimate is <= ||A||_F;
        # the true residual adds n*eps*||A|| ||x||
        res, norm_a, norm_x = np.linalg.norm(A @ x - b), fro(d), np.linalg.norm(x)
        assert res <= 2 * rtol * (norm_a * norm_x + np.linalg.norm(b)) + A.shape[0] * eps("float64") * norm_a * norm_x

    run(backend, prop, spectra(definite=False))


def test_to_scipy_lobpcg_top3(backend):
    def prop(sp):
        A, d, seed = sp
        n = A.shape[0]
        X = np.random.default_rng(seed).standard_normal((n, 3))
        tol = 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # lobpcg only warns when it does not converge
            w, _ = spla.lobpcg(view(backend, A), X, tol=tol, maxiter=100, largest=True)
        # a Ritz value with residual norm <= tol is within tol of an eigenvalue (A symmetric)
        assert np.max(np.abs(np.sort(w) - d[-3:])) <= tol

    run(backend, prop, spectra(definite=True, top_gap=True))


def test_to_scipy_expm_multiply(backend):
    def prop(sp):
        A, _, seed = sp
        A = A / 10.0  # ||A|| <= 1
        b = np.random.default_rng(seed).standard_normal(A.shape[0])
        got = spla.expm_multiply(view(backend, A), b, traceA=float(np.trace(A)))
        want = scipy.linalg.expm(A) @ b
        n = A.shape[0]
        assert_close(got, want, dtype="float64", n=n, scale=np.e * fro(b), what="expm_multiply")

    run(backend, prop, spectra(definite=False))


def test_aslinearoperator_unwraps_to_scipy_view(backend):
    def prop(case: Case):
        op = specop.DenseOperator(backend.asarray(case.A, case.dtype))
        assert specop.aslinearoperator(op.to_scipy()) is op
        assert specop.aslinearoperator(op) is op

    run(backend, prop, matrices())


@pytest.mark.parametrize("container", [scipy.sparse.csr_matrix, scipy.sparse.csr_array])
def test_aslinearoperator_on_scipy_sparse(container):
    def prop(case: Case):
        A = container(case.A.astype(case.dtype))
        op = specop.aslinearoperator(A)
        assert isinstance(op, specop.SparseOperator) and op.backend == "numpy"
        assert op.is_symmetric == (case.A.shape[0] == case.A.shape[1] and np.array_equal(case.A, case.A.T))
        assert op.dtype == np.dtype(case.dtype)
        np.testing.assert_array_equal(op.to_dense(), case.A)
        m, n = case.A.shape
        x, y = case.vectors(n).astype(case.dtype), case.vectors(m, salt=2).astype(case.dtype)
        kw = {"dtype": case.dtype, "scale": fro(case.A) * max(fro(x), fro(y))}
        assert_close(op @ x, case.A @ x.astype(np.float64), n=n, what="sparse matvec", **kw)
        assert_close(op.rmatvec(y), case.A.T @ y.astype(np.float64), n=m, what="sparse rmatvec", **kw)

    run(_numpy(), prop, matrices())


def test_aslinearoperator_on_scipy_linear_operator():
    def prop(case: Case):
        M = case.A.astype(case.dtype)
        S = spla.aslinearoperator(M)
        op = specop.aslinearoperator(S)
        assert isinstance(op, specop.ScipyOperator) and not op.is_symmetric
        sym = specop.aslinearoperator(S, symmetric=True)
        assert sym.is_symmetric == (M.shape[0] == M.shape[1])
        m, n = case.A.shape
        X, Y = case.vectors(n, 3).astype(case.dtype), case.vectors(m, 2, salt=2).astype(case.dtype)
        kw = {"dtype": case.dtype, "scale": fro(case.A) * max(fro(X), fro(Y))}
        assert_close(op @ X, case.A @ X.astype(np.float64), n=n, what="scipy op matmat", **kw)
        assert_close(op.rmatmat(Y), case.A.T @ Y.astype(np.float64), n=m, what="scipy op rmatmat", **kw)
        # the wrapped operator goes back to scipy and through a solver-style call
        assert_close(op.to_scipy() @ X, case.A @ X.astype(np.float64), n=n, what="round trip", **kw)

    run(_numpy(), prop, matrices())


def test_torch_tensor_through_scipy_eigsh_acceptance():
    """Acceptance: ``aslinearoperator(torch_tensor).to_scipy()`` in eigsh(k=3) to 1e-8."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    M = rng.standard_normal((30, 30))
    A = (M + M.T) / 2
    S = specop.aslinearoperator(torch.from_numpy(A)).to_scipy()
    w = spla.eigsh(S, k=3, return_eigenvectors=False)
    dense = np.linalg.eigvalsh(A)
    want = dense[np.argsort(np.abs(dense))[-3:]]  # which="LM"
    np.testing.assert_allclose(np.sort(w), np.sort(want), rtol=0, atol=1e-8)


def _numpy():
    """The numpy backend as the ``run`` helper expects it (scipy input is host only)."""
    from conftest import Backend

    return Backend("numpy", specop.backends.namespace("numpy"))


def test_a_scipy_operator_without_adjoint_is_refused_by_name_as_scipy_does():
    """scipy's LinearOperator(matvec=...) without rmatvec given to an algorithm that needs A^T: scipy's
    NotImplementedError (also specop's TypeError) naming rmatvec, not "'NoneType' object is not callable"."""
    a = np.random.default_rng(0).standard_normal((8, 5))
    op = spla.LinearOperator((8, 5), matvec=lambda v: a @ v, dtype=np.float64)
    with pytest.raises(NotImplementedError, match="rmatvec is not defined"):
        spla.lsqr(op, np.ones(8))  # scipy's own answer, which the drop-in mirrors
    for call in (lambda: ssl.lsqr(op, np.ones(8)), lambda: ssl.lsmr(op, np.ones(8)),
                 lambda: ssl.svds(op, k=2), lambda: specop.lsqr(op, np.ones(8)),
                 lambda: specop.aslinearoperator(op).rmatvec(np.ones(8))):
        with pytest.raises(NotImplementedError, match="rmatvec") as info:
            call()
        assert isinstance(info.value, TypeError)
    both = spla.LinearOperator((8, 5), matvec=lambda v: a @ v, rmatvec=lambda v: a.T @ v, dtype=np.float64)
    np.testing.assert_allclose(ssl.lsqr(both, np.ones(8), atol=1e-12, btol=1e-12)[0],
                               np.linalg.lstsq(a, np.ones(8), rcond=None)[0], rtol=1e-8)
