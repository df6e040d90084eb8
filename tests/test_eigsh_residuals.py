"""eigsh: ``converged=True`` means k pairs, each with a true residual within the tolerance.

Whenever eigsh says ``converged``, it returns exactly ``k`` pairs and each one satisfies
``||A v - w v|| <= max(tol |w|, 100 eps ||A||)`` with the residual computed densely here (plus
the rounding of that check, ``4 n eps ||A||``); the reported ``residual_norms`` are those true
residuals. A locked pair's residual no longer raises the bar for later ones, an invariant Krylov
space with fewer than k vectors is not "converged", and small bases restart as ARPACK's do (at
least half the free room per restart; both ends kept in the LM check).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import assume
from hypothesis import strategies as st
from strategies import SymCase, run, symmetric_matrices

import specop

WHICH = ("LA", "SA", "LM", "BE")


def _true_residuals(A: np.ndarray, backend, res) -> np.ndarray:
    V = backend.to_numpy(res.eigenvectors).astype(np.float64)
    return np.linalg.norm(A @ V - V * res.eigenvalues, axis=0)


def _assert_honest(A: np.ndarray, backend, res, k: int, tol: float, eps: float, norm: float | None = None) -> None:
    """``converged`` implies k pairs within tol (true residuals); residual_norms are the true ones."""
    norm = max(float(np.max(np.abs(np.linalg.eigvalsh(A)))) if norm is None else norm, 1e-300)
    floor = 100 * eps * norm + 4 * A.shape[0] * eps * norm
    true = _true_residuals(A, backend, res)
    np.testing.assert_allclose(res.residual_norms, true, rtol=0.5, atol=floor)
    if res.converged:
        assert res.eigenvalues.shape == (k,), f"converged with {res.eigenvalues.size} of {k} pairs"
        bound = np.maximum(tol * np.abs(res.eigenvalues), 100 * eps * norm) + 4 * A.shape[0] * eps * norm
        assert np.all(true <= bound), f"converged, but true residuals / bound = {true / bound}"


@st.composite
def grid_laplacians(draw) -> SymCase:
    """A 2-D or 3-D grid Laplacian with n <= 40 (double and triple eigenvalues), scaled by 10**e, |e| <= 3."""
    dims = draw(st.sampled_from((2, 3)))
    m = draw(st.integers(2, 6) if dims == 2 else st.integers(2, 3))
    scale = 10.0 ** draw(st.integers(-3, 3))
    A = scale * _laplacian(m, dims).toarray()
    return SymCase(A, "float64", 0, "laplacian", np.linalg.eigvalsh(A))


def test_converged_means_k_pairs_within_tol(backend):
    # repeated, clustered and few-distinct spectra and grid Laplacians; small bases (ncv = 2k + 1,
    # or 3) and verify=False, where an invariant Krylov space holds fewer than k vectors
    def prop(case: SymCase, which: str, k: int, small: bool, verify: bool) -> None:
        assume(k < case.n)
        ncv = min(case.n, max(2 * k + 1, 3)) if small else None
        tol = 1e-8 if case.dtype == "float64" else 1e-5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", specop.ConvergenceWarning)
            res = specop.eigsh(case.operator(backend), k=k, which=which, ncv=ncv, dense=False, tol=tol,
                               seed=case.seed, verify=verify, maxiter=500)
        _assert_honest(case.A, backend, res, k, tol, case.eps)

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, symmetric_matrices(min_size=2, max_size=30) | grid_laplacians(), st.sampled_from(WHICH),
        st.sampled_from((1, 2, 3, 6)), st.booleans(), st.booleans(), max_examples=6 if few else 80)


def test_pairs_returned_at_maxiter_are_orthonormal_and_honest(backend):
    # a run stopped by maxiter returns its locked pairs and the best active Ritz pairs: those are
    # orthonormal Ritz vectors with their true residuals, also when a pair locked in that last restart
    def prop(case: SymCase, which: str, k: int, extra: int, maxiter: int, tol_exp: int) -> None:
        assume(k < case.n)
        ncv = min(case.n, k + extra)
        assume(ncv > k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", specop.ConvergenceWarning)
            res = specop.eigsh(case.operator(backend), k=k, which=which, ncv=ncv, dense=False,
                               tol=10.0 ** -tol_exp, seed=case.seed, maxiter=maxiter)
        V = backend.to_numpy(res.eigenvectors).astype(np.float64)
        m = V.shape[1]
        np.testing.assert_allclose(V.T @ V, np.eye(m), atol=100 * case.n * case.eps)
        _assert_honest(case.A, backend, res, k, 10.0 ** -tol_exp, case.eps)

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, symmetric_matrices(min_size=8, max_size=40, structures=("random", "indefinite")),
        st.sampled_from(WHICH), st.integers(2, 5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 4),
        max_examples=6 if few else 80)


def test_invariant_krylov_space_with_fewer_than_k_vectors_is_not_converged(backend):
    # two distinct eigenvalues: a Krylov space of dimension 2 is invariant; k = 3..5 must not stop there
    rng = np.random.default_rng(0)
    n = 21
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.repeat([1.0, 2.0], [10, 11])) @ Q.T
    A = (A + A.T) / 2
    cases = [(3, False)] if backend.name == "jax" else [(3, False), (5, False), (3, True), (5, True)]
    for k, verify in cases:  # (JAX compiles each basis shape anew: one case)
        res = specop.eigsh(specop.DenseOperator(backend.asarray(A)), k=k, verify=verify, dense=False, ncv=10, seed=0)
        assert res.converged and res.eigenvalues.size == k
        _assert_honest(A, backend, res, k, 1e-8, 2.2e-16)


def _laplacian(m: int, dims: int) -> sp.csr_matrix:
    T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    out = T
    for _ in range(dims - 1):
        out = sp.kron(out, sp.identity(m)) + sp.kron(sp.identity(out.shape[0]), T)
    return sp.csr_matrix(out)


@pytest.mark.parametrize(("m", "dims"), [(8, 3), (14, 2)])
def test_grid_laplacians_with_repeated_eigenvalues_meet_tol(backend, m, dims):
    # triple (3-D) and double (2-D) eigenvalues; BE mixes large and small |lambda|: a top pair's
    # residual used to raise the acceptance floor of the bottom ones (true residual 2x tol here for
    # seeds 1 and 2, 25-41x on the 30^3 grid). JAX compiles every basis shape of a 512-long run
    # anew (a minute per run on 2 cores): it runs the small grids of the property above instead.
    if backend.name == "jax":
        pytest.skip("JAX: grid Laplacians up to n = 40 in test_converged_means_k_pairs_within_tol")
    L = _laplacian(m, dims)
    A = L.toarray()
    op = specop.aslinearoperator(L) if backend.name == "numpy" else specop.DenseOperator(backend.asarray(A))
    for seed in (1, 2, 3, 0)[: 4 if backend.name == "numpy" else 2]:
        res = specop.eigsh(op, k=10, which="BE", tol=1e-8, seed=seed, ncv=22)
        assert res.converged
        _assert_honest(A, backend, res, 10, 1e-8, 2.2e-16, norm=4.0 * dims)


def test_three_vector_basis_lm_converges_where_arpack_does():
    spectrum = np.concatenate([[-2.28, -2.03, -1.89], np.linspace(-1.26, 0.93, 14)])
    n = spectrum.size
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))
    A = (Q * spectrum) @ Q.T
    A = (A + A.T) / 2
    from conftest import Backend

    for s in range(10):
        v0 = np.random.default_rng(s).standard_normal(n)
        w = spla.eigsh(A, k=1, which="LM", ncv=3, v0=v0, tol=1e-8, return_eigenvectors=False)
        assert abs(abs(w[0]) - 2.28) < 1e-6  # ARPACK converges
        res = specop.eigsh(A, k=1, which="LM", ncv=3, dense=False, v0=v0, tol=1e-8)
        assert res.converged and res.verified, (s, res)
        _assert_honest(A, Backend("numpy", np), res, 1, 1e-8, 2.2e-16)
        assert abs(res.eigenvalues[0] + 2.28) < 1e-6


@pytest.mark.parametrize(("m", "k"), [(12, 6), (16, 5), (20, 4)])
def test_small_basis_converges_within_arpacks_restarts(m, k):
    # ncv = 2k + 1 and ARPACK's maxiter: restarts add at least half the free room, and the
    # multiplicity check has a budget of its own, so eigsh converges (and verifies) where ARPACK
    # converges (ARPACK, without a check, misses copies of the triple eigenvalues)
    L = _laplacian(m, 3)
    n = L.shape[0]
    for s in range(2):
        v0 = np.random.default_rng(s).standard_normal(n)
        spla.eigsh(L, k=k, ncv=2 * k + 1, tol=1e-8, maxiter=100, v0=v0, return_eigenvectors=False)  # no raise
        res = specop.eigsh(L, k=k, ncv=2 * k + 1, v0=v0, tol=1e-8, maxiter=100)
        assert res.converged and res.verified, (m, k, s, res.matvecs, res.restarts)


def test_skipped_convergence_tests_only_delay_convergence(backend, monkeypatch):
    if backend.name != "numpy":
        pytest.skip("the skipping is host code shared by every backend: numpy shows it")
    # leaving out the small eigh while the wanted pairs are far from converged may see convergence a step
    # late (a product more), never early: the same pairs within tol, and hardly more products than testing
    # at every step
    from specop.linalg import _locking, thick_restart

    assert _locking.skipped_tests(_locking.FAR_STEP) == 0
    assert _locking.skipped_tests(1.5 * _locking.FAR_STEP ** 2) == 2
    assert _locking.skipped_tests(1e300) == _locking.MAX_SKIPPED
    extra = total = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = 120
        d = (rng.standard_normal(n), np.geomspace(1e-4, 1.0, n), np.repeat(rng.uniform(0, 4, n // 3), 3))[seed % 3]
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        A = (Q * d) @ Q.T
        A = (A + A.T) / 2
        for k, which in ((1, "LA"), (6, "BE")):
            monkeypatch.setattr(thick_restart, "skipped_tests", _locking.skipped_tests)
            res = specop.eigsh(A, k=k, which=which, seed=seed)
            monkeypatch.setattr(thick_restart, "skipped_tests", lambda far: 0)
            every = specop.eigsh(A, k=k, which=which, seed=seed)
            _assert_honest(A, backend, res, k, 1e-8, float(np.finfo(np.float64).eps))
            np.testing.assert_allclose(res.eigenvalues, every.eigenvalues, rtol=0, atol=1e-7 * np.abs(d).max())
            extra += max(res.matvecs - every.matvecs, 0)
            total += every.matvecs
    assert extra <= 0.01 * total, (extra, total)


@pytest.mark.xfail(strict=True, reason="known bug, open: the acceptance floor 100 eps ||A|| accepts the pairs "
                   "below a dominant eigenvalue unresolved (found 2026-12-02; see _locking.Acceptance._floor)")
@pytest.mark.parametrize("dtype, top", [("float64", 1e14), ("float32", 1e4)])
def test_pairs_under_a_dominant_eigenvalue_are_right_or_flagged(backend, dtype, top):
    # a dominant outlier (a Hessian's top eigenvalue over its bulk) must not excuse the bulk pairs: scipy's
    # ARPACK gets them to well within 10 eps ||A||; a "converged" result must be as right, or say it is not
    if backend.name != "numpy":
        pytest.skip("the acceptance rule is host code shared by every backend: numpy shows it")
    n = 200
    d = np.r_[top, np.linspace(1.0, 3.0, n - 1)]
    res = specop.eigsh(specop.DiagonalOperator(d.astype(dtype)), k=3, which="LA",
                       tol=1e-6 if dtype == "float32" else 1e-10)
    want = np.sort(d)[-3:]
    eps = float(np.finfo(dtype).eps)
    assert not res.converged or np.all(np.abs(res.eigenvalues - want) <= 10 * eps * top), \
        (res.eigenvalues, want, res.residual_norms)
