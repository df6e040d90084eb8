"""Lanczos: spectrum, orthonormal basis, T = Q^T A Q, breakdown, selective and no reorthogonalization.

Oracle: ``numpy.linalg.eigh`` of the host matrix (already rounded to the operator dtype).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from strategies import (  # noqa: F401  (the strategies' own tests run here)
    DISTINCT,
    SymCase,
    nan_after,
    run,
    symmetric_matrices,
    test_symmetric_matrices_are_symmetric_and_representable,
    test_symmetric_matrices_have_their_spectrum,
)

import specop


def _basis(backend, res) -> np.ndarray:
    return backend.to_numpy(res.basis).astype(np.float64)


def test_full_reorth_recovers_every_eigenvalue(backend):
    def prop(case: SymCase) -> None:
        res = specop.lanczos(case.operator(backend), steps=case.n, reorth="full", seed=case.seed)
        assert res.steps_done == case.n and res.matvecs == case.n
        err = np.max(np.abs(res.ritz()[0] - case.eigenvalues))
        assert err <= 1e-10 * case.norm, f"max Ritz error {err:.2e} (|A| = {case.norm:.2e})"

    run(backend, prop, symmetric_matrices(structures=DISTINCT, dtypes=("float64",)))


def test_full_reorth_basis_is_orthonormal_and_reduces_A_to_T(backend):
    # orthonormality comes from CGS2 in the float64 recurrence, whatever the operator dtype;
    # Q^T A Q = T holds up to the matvec's rounding: n eps(dtype) |A| (float64: ~1e-14 |A|)
    def prop(case: SymCase, steps: int) -> None:
        res = specop.lanczos(case.operator(backend), steps=steps, reorth="full", seed=case.seed,
                             return_basis=True)
        Q = _basis(backend, res)
        m = res.steps_done
        assert Q.shape == (case.n, m) and m <= min(steps, case.n)
        orth = np.max(np.abs(Q.T @ Q - np.eye(m)))
        assert orth <= 1e-12, f"|Q^T Q - I| = {orth:.2e}"
        rel = np.max(np.abs(Q.T @ case.A @ Q - res.tridiagonal()))
        bound = max(1e-12, 4 * case.n * case.eps) * case.norm
        assert rel <= bound, f"|Q^T A Q - T| = {rel:.2e} > {bound:.2e}"

    run(backend, prop, symmetric_matrices(), st.integers(1, 40))


def test_breakdown_stops_at_the_number_of_distinct_eigenvalues(backend):
    # In exact arithmetic the Krylov space of a random start has dimension m = #distinct
    # eigenvalues and beta_m = 0. In floating point, rounding puts components along the other
    # copies of a repeated eigenvalue into the basis, and the recurrence amplifies them: the
    # computed beta_m grows like ~10^(m/2) eps |A| (measured over 1,500 random starts: max
    # 34 eps |A| for m <= 3, 600 for m = 5, 2e4 for m = 8, 4e5 for m = 10; float32 alike), so
    # the breakdown test (beta < 100 sqrt(n) eps |T|) fires at exactly m only for few distinct
    # values. For m <= 3 the test asserts exactly m steps; for every m it asserts that the
    # Ritz values found are the distinct eigenvalues, each one of them (copies found through
    # rounding are genuine eigenvalues of the rounded matrix).
    def prop(case: SymCase) -> None:
        res = specop.lanczos(case.operator(backend), steps=case.n, reorth="full", seed=case.seed)
        want = np.unique(case.spectrum)  # exact generating values
        theta = res.ritz()[0]
        tol = 1e-10 * case.norm + 4 * case.n * case.eps * case.norm
        if case.distinct <= 3:
            if case.distinct < case.n:
                assert res.breakdown, f"no breakdown after {res.steps_done} steps ({case.distinct} distinct)"
            assert res.steps_done == case.distinct
        assert res.steps_done >= case.distinct
        dist = np.abs(theta[:, None] - want[None, :])
        assert np.max(dist.min(axis=1)) <= tol, "a Ritz value is no eigenvalue"
        assert np.max(dist.min(axis=0)) <= tol, "an eigenvalue was missed"

    run(backend, prop, symmetric_matrices(structures=("few_distinct", "repeated", "rank_deficient")))


def test_selective_reorth_as_accurate_as_full(backend):
    # Simon (1984): partial reorthogonalization keeps |q_i . q_j| <= sqrt(eps) (~1.5e-8), which
    # makes T equal to the projection of A up to O(eps |A|): Ritz values as accurate as with
    # full reorthogonalization, while the basis is only semi-orthogonal (1e-6 leaves room for
    # the omega estimates being upper bounds of order sqrt(eps) times a modest factor).
    def prop(case: SymCase) -> None:
        res = specop.lanczos(case.operator(backend), steps=case.n, reorth="selective", seed=case.seed,
                             return_basis=True)
        assert res.steps_done == case.n
        err = np.max(np.abs(res.ritz()[0] - case.eigenvalues))
        assert err <= 1e-10 * case.norm, f"max Ritz error {err:.2e}"
        Q = _basis(backend, res)
        orth = np.max(np.abs(Q.T @ Q - np.eye(case.n)))
        assert orth <= 1e-6, f"|Q^T Q - I| = {orth:.2e}"

    run(backend, prop, symmetric_matrices(structures=DISTINCT, dtypes=("float64",)))


@pytest.mark.parametrize("seed", [0, 1])
def test_selective_reorth_does_fewer_reorthogonalizations_on_a_long_run(backend, seed):
    # a long run on a matrix with well separated extreme eigenvalues: Ritz values converge,
    # orthogonality is lost along them, and selective reorth acts only then
    rng = np.random.default_rng(seed)
    n, steps = 100, 50
    d = np.concatenate([np.linspace(0.0, 1.0, n - 4), [1.5, 2.0, 3.0, 5.0]])
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    op = specop.DenseOperator(backend.asarray(A))
    full = specop.lanczos(op, steps=steps, reorth="full", seed=seed)
    sel = specop.lanczos(op, steps=steps, reorth="selective", seed=seed, return_basis=True)
    assert full.reorthogonalizations == steps - 1
    assert 0 < sel.reorthogonalizations < full.reorthogonalizations / 2, sel.reorthogonalizations
    top_full, top_sel = full.ritz()[0][-6:], sel.ritz()[0][-6:]
    np.testing.assert_allclose(top_sel, top_full, rtol=0, atol=1e-10 * 5.0)
    np.testing.assert_allclose(top_full[-4:], d[-4:], rtol=0, atol=1e-10 * 5.0)
    Qb = _basis(backend, sel)
    assert np.max(np.abs(Qb.T @ Qb - np.eye(steps))) <= 1e-6


def test_no_reorth_stores_no_basis_and_keeps_the_three_term_relation(backend):
    # without reorthogonalization A Q_m = Q_m T_m + beta_m q_{m+1} e_m^T still holds to rounding
    # (Paige 1976): the first m-1 columns of A Q - Q T vanish up to ~ sqrt(n) eps |A| each
    def prop(case: SymCase, steps: int) -> None:
        op = case.operator(backend)
        res = specop.lanczos(op, steps=steps, reorth="none", seed=case.seed)
        assert res.basis is None
        res2 = specop.lanczos(op, steps=steps, reorth="none", seed=case.seed, return_basis=True)
        np.testing.assert_array_equal(res2.alpha, res.alpha)
        np.testing.assert_array_equal(res2.beta, res.beta)
        Q = _basis(backend, res2)
        m = res2.steps_done
        R = (case.A @ Q - Q @ res2.tridiagonal())[:, : m - 1]
        bound = 4 * case.n * case.eps * case.norm
        assert np.max(np.abs(R), initial=0.0) <= bound

    run(backend, prop, symmetric_matrices(), st.integers(1, 40))


def test_float32_operator_float64_recurrence(backend):
    # A float32 operator with the default float64 recurrence: the only float32 rounding is in
    # the matvec, a backward error |dA| <= n eps32 |A| per product, so each Ritz value is within
    # about n eps32 |A| of an eigenvalue of the rounded matrix (observed: ~1e-8 relative for
    # n = 40 with full reorthogonalization, against the bound 40 * 1.2e-7 = 4.8e-6).
    rng = np.random.default_rng(3)
    n = 40
    G = rng.standard_normal((n, n))
    A32 = ((G + G.T) / 2).astype(np.float32)
    A = A32.astype(np.float64)
    w = np.linalg.eigvalsh(A)
    op = specop.DenseOperator(backend.asarray(A32, "float32"))
    res = specop.lanczos(op, steps=n, reorth="full", seed=0)
    assert res.alpha.dtype == np.float64
    err = np.max(np.abs(res.ritz()[0] - w)) / np.max(np.abs(w))
    assert err <= n * np.finfo(np.float32).eps, f"relative Ritz error {err:.2e}"
    # the float32 recurrence really is worse (sanity: the dtype switch is effective)
    res32 = specop.lanczos(op, steps=n, reorth="full", seed=0, recurrence_dtype=None)
    err32 = np.max(np.abs(res32.ritz()[0] - w)) / np.max(np.abs(w))
    assert err < err32


# -------------------------------------------------------------------- bad input
def test_lanczos_rejects_bad_input(backend):
    sq = specop.DenseOperator(backend.asarray(np.eye(4)))
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        specop.lanczos(specop.DenseOperator(backend.asarray(np.ones((3, 4)))), steps=2)
    for steps in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            specop.lanczos(sq, steps=steps)
    with pytest.raises(ValueError, match="reorth"):
        specop.lanczos(sq, steps=2, reorth="partial")
    with pytest.raises(ValueError, match="v0"):
        specop.lanczos(sq, backend.asarray(np.zeros(4)), steps=2)
    nonsym = specop.DenseOperator(backend.asarray(np.triu(np.ones((4, 4)))))
    with pytest.raises(ValueError, match="not symmetric"):
        specop.lanczos(nonsym, steps=2, check_symmetric=True)


def test_lanczos_nan_from_matvec_names_the_step(backend):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((10, 10))
    for reorth in ("full", "selective", "none"):
        with pytest.raises(specop.NonFiniteError, match=r"lanczos.*step 3"):
            specop.lanczos(nan_after(backend, G + G.T, 3), steps=8, reorth=reorth, seed=0)
