"""svds: thick-restart Golub-Kahan-Lanczos against ``numpy.linalg.svd``.

Bounds follow svds.py's module docstring: a triplet is converged when its residual
``rho <= max(tol s, 100 eps ||A||)``; the residual checked here,
``sqrt(||A v - s u||^2 + ||A^T u - s v||^2)``, is computed densely from the returned vectors,
so it also carries the rounding of the products and of casting the vectors to the
operator's dtype (``4 max(m, n) eps ||A||``). ``k`` orthonormal triplets with residuals
``r_i`` are ``k`` eigenpairs of ``[[0, A], [A^T, 0]]`` with residuals ``r_i / sqrt 2``, so the
values lie within ``sqrt(k) max r_i`` of ``k`` singular values (Kahan); the multiplicity
check makes them the wanted ones.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as sla
from hypothesis import assume
from hypothesis import strategies as st
from rect_strategies import RectCase, rect_matrices
from strategies import nan_after, run

import specop
from specop.linalg.svds import svds


def _tol(case: RectCase) -> float:
    return 1e-8 if case.dtype == "float64" else 1e-5


def _residuals(case: RectCase, u: np.ndarray, s: np.ndarray, vh: np.ndarray) -> np.ndarray:
    ra = np.linalg.norm(case.A @ vh.T - u * s, axis=0)
    rat = np.linalg.norm(case.A.T @ u - vh.T * s, axis=0)
    return np.hypot(ra, rat)


def _separation(case: RectCase, k: int, which: str) -> float:
    """Smallest gap between a wanted and an unwanted singular value, relative to ``||A||``."""
    sv = case.singular_values
    want, rest = (sv[:k], sv[k:]) if which == "LM" else (sv[-k:], sv[:-k])
    if rest.size == 0:
        return 1.0
    return float(np.abs(want[:, None] - rest[None, :]).min() / case.norm)


def _check(case: RectCase, backend, res, k: int, which: str, tol: float) -> None:
    u, s, vh = res  # unpacks like scipy
    m, n = case.shape
    u, vh = backend.to_numpy(u).astype(np.float64), backend.to_numpy(vh).astype(np.float64)
    assert u.shape == (m, k) and s.shape == (k,) and vh.shape == (k, n)
    assert np.all(np.diff(s) >= 0), "singular values not ascending"
    big = max(m, n)
    slack = 4 * big * case.eps * case.norm
    bound = np.maximum(tol * s, 100 * case.eps * case.norm) + slack
    resid = _residuals(case, u, s, vh)
    assert np.all(resid <= bound), f"residuals {resid} > {bound}"
    orth = max(np.abs(u.T @ u - np.eye(k)).max(), np.abs(vh @ vh.T - np.eye(k)).max())
    assert orth <= max(1e-12, 10 * big * case.eps), f"orthogonality lost: {orth:.2e}"
    sv = case.singular_values
    want = np.sort(sv[:k]) if which == "LM" else np.sort(sv[-k:])
    err = np.abs(s - want)
    assert np.all(err <= np.sqrt(k) * bound.max()), f"singular value errors {err} (want {want}, got {s})"
    assert res.verified


def test_svds_matches_svd(backend):
    # tall, wide and square; repeated, rank-deficient, clustered and ill-conditioned spectra.
    # A small basis (ncv = k + 2) forces restarts. "SM" on a clustered or ill-conditioned bottom
    # may exhaust maxiter: then the run must warn and report its residuals honestly.
    def prop(case: RectCase, which: str, k: int, small: bool) -> None:
        N = min(case.shape)
        assume(k <= N)
        tol = _tol(case)
        ncv = min(N, k + 2) if small else None
        if ncv == k and k < N:
            ncv = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = svds(case.operator(backend), k=k, which=which, tol=tol, seed=case.seed, ncv=ncv)
        assert res.matvecs > 0 and res.rmatvecs > 0
        if res.converged:
            _check(case, backend, res, k, which, tol)
            return
        # a wanted value nearly tied with an unwanted one (clustered, relative gap < 1e-3) may be beyond
        # a small restarted basis, and "SM" on a crowded bottom converges slowly (module docstring)
        assert which == "SM" or _separation(case, k, which) < 1e-3, \
            f"no convergence on a {case.structure} spectrum with which={which}"
        assert any(issubclass(c.category, specop.ConvergenceWarning) for c in caught)
        u, s, vh = res
        resid = _residuals(case, backend.to_numpy(u).astype(np.float64), s, backend.to_numpy(vh).astype(np.float64))
        slack = 4 * max(case.shape) * case.eps * case.norm
        np.testing.assert_allclose(res.residual_norms, resid, rtol=0.5, atol=100 * case.eps * case.norm + slack)

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, rect_matrices(), st.sampled_from(("LM", "SM")), st.sampled_from((1, 2, 5)), st.booleans(),
        max_examples=5 if backend.name == "jax" else 20 if few else 100)


def test_svds_finds_every_copy_of_a_repeated_singular_value(backend):
    # sigma = 5 (x3), 3 (x2), 2, then a bulk below 1: a single Krylov space holds one vector of each
    # singular subspace; the check must find the copies (verify=False may miss them, like ARPACK)
    rng = np.random.default_rng(7)
    U, _ = np.linalg.qr(rng.standard_normal((60, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    s = np.concatenate([[5, 5, 5, 3, 3, 2], rng.uniform(0.1, 1.0, 34)])
    A = (U * s) @ V.T
    op = specop.DenseOperator(backend.asarray(A))
    for k in (2, 4, 6):
        res = svds(op, k=k, seed=3)
        assert res.converged and res.verified
        np.testing.assert_allclose(res.singular_values, np.sort(s)[::-1][:k][::-1], rtol=1e-10)


def test_svds_unpacks_like_scipy_and_counts_products():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 20))
    calls = {"mv": 0, "rmv": 0}

    def mv(v):
        calls["mv"] += 1
        return A @ v

    def rmv(v):
        calls["rmv"] += 1
        return A.T @ v

    op = specop.FunctionOperator(mv, (30, 20), rmatvec=rmv)
    res = svds(op, k=3, seed=0)
    u, s, vh = res
    assert (calls["mv"], calls["rmv"]) == (res.matvecs, res.rmatvecs) and res.products == sum(calls.values())
    u2, s2, vh2 = sla.svds(A, k=3, rng=0)
    np.testing.assert_allclose(s, s2, rtol=1e-10)  # same order (ascending) as scipy
    np.testing.assert_allclose(np.abs(u.T @ u2), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(np.abs(vh @ vh2.T), np.eye(3), atol=1e-8)
    only_u = svds(A, k=3, seed=0, return_singular_vectors="u")
    assert only_u.vh is None and only_u.u.shape == (30, 3)
    only_vh = svds(A.T, k=3, seed=0, return_singular_vectors="vh")  # wide: X = A^T inside
    assert only_vh.u is None and only_vh.vh.shape == (3, 30)
    np.testing.assert_allclose(only_vh.singular_values, s, rtol=1e-10)
    none = svds(A, k=3, seed=0, return_singular_vectors=False)
    assert none.u is None and none.vh is None


def test_svds_uses_no_more_products_than_arpack():
    # scipy's ARPACK svds runs eigsh on A^T A (two products per Lanczos step) plus k products to
    # recover U; same tolerance, scipy's own example matrices and a sparse random one
    rng = np.random.default_rng(0)
    S = scipy.sparse.random(400, 200, density=0.05, random_state=0, format="csr")
    D = rng.standard_normal((150, 100)) @ np.diag(np.linspace(1, 10, 100)) @ rng.standard_normal((100, 100)) / 10
    for M in (S, D):
        for k in (1, 6):
            count = [0]

            def mv(x, M=M, count=count):
                count[0] += 1
                return M @ x

            def rmv(x, M=M, count=count):
                count[0] += 1
                return M.T @ x

            L = sla.LinearOperator(M.shape, matvec=mv, rmatvec=rmv, dtype=float)
            sla.svds(L, k=k, tol=1e-8, rng=0)
            ours = svds(M, k=k, tol=1e-8, seed=0, verify=False)
            assert ours.converged and ours.products <= count[0], (ours.products, count[0])


def test_svds_sm_on_scipy_docstring_difference_operator():
    # scipy's docstring example: the (n-1) x n first-difference matrix, smallest singular values
    # known in closed form, 2 sin(pi j / (2 n))
    n = 100
    D = np.diff(np.eye(n), axis=0)
    res = svds(D, k=3, which="SM", seed=0)
    assert res.converged
    np.testing.assert_allclose(res.singular_values, 2 * np.sin(np.pi * np.arange(1, 4) / (2 * n)), rtol=1e-7)


def test_svds_flags_non_convergence(backend):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((80, 60))
    op = specop.DenseOperator(backend.asarray(A))
    with pytest.warns(specop.ConvergenceWarning, match="no convergence after 1 restarts"):
        res = svds(op, k=4, which="SM", ncv=6, maxiter=1, seed=0)
    assert not res.converged
    u, s, vh = (backend.to_numpy(x) if i != 1 else x for i, x in enumerate(res))
    resid = np.linalg.norm(A.T @ u - vh.T * s, axis=0)
    np.testing.assert_allclose(res.residual_norms, resid, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (4, 1), (2, 3), (3, 2), (5, 5)])
def test_svds_tiny_and_odd_sizes(backend, shape):
    rng = np.random.default_rng(sum(shape))
    A = rng.standard_normal(shape)
    sv = np.linalg.svd(A, compute_uv=False)
    op = specop.DenseOperator(backend.asarray(A))
    for which in ("LM", "SM"):
        for k in range(1, min(shape) + 1):
            _, s, _ = svds(op, k=k, which=which, seed=0)
            want = np.sort(sv[:k]) if which == "LM" else np.sort(sv[-k:])
            np.testing.assert_allclose(s, want, rtol=0, atol=1e-12 * sv[0])


def test_svds_rejects_bad_input(backend):
    op = specop.DenseOperator(backend.asarray(np.ones((5, 4))))
    for k in (0, 5, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"^k: expected"):
            svds(op, k=k)
    with pytest.raises(ValueError, match=r"^which: expected"):
        svds(op, k=1, which="LA")
    for tol in (-1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match=r"^tol: expected"):
            svds(op, k=1, tol=tol)
    for ncv in (1, 5, 0):
        with pytest.raises(ValueError, match=r"^ncv: expected"):
            svds(op, k=1, ncv=ncv)
    with pytest.raises(ValueError, match=r"^maxiter: expected"):
        svds(op, k=1, maxiter=0)
    with pytest.raises(ValueError, match=r"^return_singular_vectors: expected"):
        svds(op, k=1, return_singular_vectors="v")
    with pytest.raises(ValueError, match=r"^v0: expected shape \(4,\)"):
        svds(op, k=1, v0=backend.asarray(np.ones(5)))
    with pytest.raises(ValueError, match=r"^v0: expected a non-zero"):
        svds(op, k=1, v0=backend.asarray(np.zeros(4)))
    with pytest.raises(TypeError, match="no adjoint"):
        svds(specop.FunctionOperator(lambda v: v[:3], (3, 4), like=op), k=1)


def test_svds_nan_from_a_product_is_an_error(backend):
    A = np.random.default_rng(3).standard_normal((20, 10))
    op = nan_after(backend, A, 3, symmetric=False)
    with pytest.raises(specop.NonFiniteError, match=r"svds.*iteration 4"):
        svds(op, k=2, seed=0)
