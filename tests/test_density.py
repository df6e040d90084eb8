"""spectral_density: SLQ Gauss quadrature exactness, KPM moments vs dense Chebyshev, KPM
normalisation/positivity, identical results on every backend, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from strategies import SymCase, nan_after, run, symmetric_matrices, unit_norm

import specop
import specop.random
from specop.linalg.kpm import damping
from specop.linalg.spectral import slq_probe


def _cheb_moments(A: np.ndarray, v: np.ndarray, degree: int, bounds) -> np.ndarray:
    """Dense ``v^T T_k(A_hat) v / v^T v``, k = 0..degree."""
    lo, hi = bounds
    Ah = (A - 0.5 * (hi + lo) * np.eye(A.shape[0])) / (0.5 * (hi - lo))
    t_prev, t = v, Ah @ v
    out = [v @ v, v @ t]
    for _ in range(2, degree + 1):
        t_prev, t = t, 2 * Ah @ t - t_prev
        out.append(v @ t)
    return np.asarray(out[: degree + 1]) / (v @ v)


def test_slq_quadrature_exact_for_polynomials(backend):
    # Gauss quadrature with m nodes is exact for degree <= 2m - 1 (Golub & Meurant Ch. 6);
    # A has unit norm, so the Chebyshev polynomials T_k(A) are perfectly conditioned
    def prop(case: SymCase, steps: int) -> None:
        case = unit_norm(case)
        v = case.rng(1).standard_normal(case.n)
        nodes, weights, _ = slq_probe(case.operator(backend), backend.asarray(v), min(steps, case.n), "full")
        m = min(steps, case.n)
        got = np.polynomial.chebyshev.chebvander(nodes, 2 * m - 1).T @ weights
        want = _cheb_moments(case.A, v, 2 * m - 1, (-1.0, 1.0))
        assert np.max(np.abs(got - want)) <= 1e-10

    run(backend, prop, symmetric_matrices(dtypes=("float64",), scaled=False), st.integers(1, 20))


def test_kpm_moments_equal_dense_chebyshev_moments(backend):
    def prop(case: SymCase, probes: int, degree: int, kind: str, kernel: str) -> None:
        dens = specop.spectral_density(case.operator(backend), method="kpm", num_probes=probes, degree=degree,
                                       seed=case.seed, kind=kind, kernel=kernel)
        V = specop.random.probes(case.n, probes, seed=case.seed, kind=kind)
        want = np.stack([_cheb_moments(case.A, V[:, r], degree, dens.bounds) for r in range(probes)])
        lo, hi = dens.bounds
        # both recurrences carry the mapped operator's rounding, eps |A| / half-width per product
        # (large for a near-scalar spectrum, whose interval is only ~1e-6 |A| wide)
        atol = 1e-10 + 10 * (degree + 1) * np.finfo(np.float64).eps * max(abs(lo), abs(hi)) / (0.5 * (hi - lo))
        np.testing.assert_allclose(dens.probe_moments, want, rtol=0, atol=atol)
        np.testing.assert_allclose(dens.moments, damping(degree, kernel) * want.mean(axis=0), rtol=0, atol=atol)
        assert lo <= case.eigenvalues[0] and case.eigenvalues[-1] <= hi

    run(backend, prop, symmetric_matrices(dtypes=("float64",), max_size=30), st.integers(1, 3), st.integers(1, 30),
        st.sampled_from(specop.random.KINDS), st.sampled_from(("jackson", "lorentz", "none")))


def test_kpm_density_integrates_to_one_and_jackson_is_non_negative(backend):
    def prop(case: SymCase, degree: int) -> None:
        dens = specop.spectral_density(case.operator(backend), method="kpm", num_probes=2, degree=degree,
                                       seed=case.seed)
        lo, hi = dens.bounds
        # the closed-form cdf uses arccos, whose sqrt-type sensitivity at +-1 turns a rounding of
        # the mapped endpoint into ~sqrt(2 eps)/pi (observed 6.7e-9 at lo): bound 2 sqrt(eps)
        edge = 2 * np.sqrt(np.finfo(np.float64).eps)
        assert abs(float(dens.cdf(hi)) - 1.0) <= edge and abs(float(dens.cdf(lo))) <= edge
        # (a midpoint rule over evaluate() is no check of the integral: the 1/sqrt(1 - x^2) endpoint
        # singularity makes it O(1/sqrt(points)) accurate; the closed-form cdf above is the integral)
        per = dens.per_probe(np.linspace(lo, hi, 301)[1:-1])
        # Jackson damping keeps the exact-moment series >= 0; the computed moments carry the
        # mapped operator's rounding, eps |A| / half-width per product, growing linearly over the
        # recurrence: the series may dip below zero by that much times the degree
        noise = (degree + 1) ** 2 * case.eps * max(abs(lo), abs(hi)) / (0.5 * (hi - lo))
        assert per.min() >= -10 * noise * per.max()

    run(backend, prop, symmetric_matrices(max_size=30), st.integers(1, 60))


def test_slq_nodes_in_the_spectrum_and_weights_sum_to_one(backend):
    def prop(case: SymCase, steps: int, reorth: str) -> None:
        dens = specop.spectral_density(case.operator(backend), num_probes=2, steps=steps, seed=case.seed,
                                       reorth=reorth)
        np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        w, slack = case.eigenvalues, 4 * case.n * case.eps * case.norm
        used = dens.nodes[dens.weights > 0]
        assert used.min() >= w[0] - slack and used.max() <= w[-1] + slack
        assert abs(float(dens.cdf(w[-1] + slack)) - 1.0) <= 1e-12

    run(backend, prop, symmetric_matrices(), st.integers(1, 40), st.sampled_from(("none", "selective", "full")))


def test_density_identical_on_every_backend(backend):
    from conftest import Backend

    ref = Backend("numpy", np)

    def prop(case: SymCase, method: str, steps: int) -> None:
        kw = dict(method=method, num_probes=3, steps=steps, degree=2 * steps, seed=case.seed)
        got = specop.spectral_density(case.operator(backend), **kw)
        want = specop.spectral_density(case.operator(ref), **kw)
        assert got.matvecs == want.matvecs
        if method == "slq":
            np.testing.assert_allclose(got.nodes, want.nodes, rtol=0, atol=1e-12 * case.norm)
            np.testing.assert_allclose(got.weights, want.weights, rtol=0, atol=1e-10)  # observed 1.1e-11
        else:
            np.testing.assert_allclose(got.bounds, want.bounds, rtol=0, atol=1e-12 * case.norm)
            np.testing.assert_allclose(got.probe_moments, want.probe_moments, rtol=0, atol=1e-10)  # observed 1.8e-11

    run(backend, prop, symmetric_matrices(structures=("random", "indefinite", "diagonal"), dtypes=("float64",)),
        st.sampled_from(("slq", "kpm")), st.integers(1, 12))


def test_density_rejects_bad_input(backend):
    op = specop.DenseOperator(backend.asarray(np.diag(np.arange(1.0, 7.0))))
    for kw, name in (({"method": "lanczos"}, "method"), ({"reorth": "partial"}, "reorth"), ({"kind": "normal"}, "kind"),
                     ({"kernel": "gauss"}, "kernel"), ({"steps": 0}, "steps"), ({"num_probes": 0}, "num_probes"),
                     ({"bounds": (1.0, 0.0)}, "bounds"), ({"degree": -1}, "degree")):
        with pytest.raises(ValueError, match=name):
            specop.spectral_density(op, **kw)
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        specop.spectral_density(specop.DenseOperator(backend.asarray(np.ones((3, 4)))))
    nonsym = specop.DenseOperator(backend.asarray(np.triu(np.ones((6, 6)))))
    with pytest.raises(ValueError, match="not symmetric"):
        specop.spectral_density(nonsym, check_symmetric=True)
    with pytest.raises(ValueError, match="bounds"):
        specop.spectral_density(op, method="kpm", bounds=(0.0, 2.0), seed=0)


@pytest.mark.parametrize("method", ["slq", "kpm"])
def test_density_nan_from_matvec_names_the_step(backend, method):
    G = np.random.default_rng(0).standard_normal((12, 12))
    with pytest.raises(specop.NonFiniteError, match="step"):
        specop.spectral_density(nan_after(backend, G + G.T, 10), method=method, num_probes=4, steps=8,
                                degree=8, bounds=(-10.0, 10.0), seed=0)
