"""SLQ with deflated outliers: exact atoms of mass 1/n plus quadrature on the projected operator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from strategies import interrupted_then_resumed, run

import specop
import specop.random


@st.composite
def spiked_cases(draw):
    """``(A, k, seed)``: a bulk in [-1, 1] plus ``k`` separated spikes in [3, 6] (distinct)."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.sampled_from((5, 8, 13, 24, 31)))
    k = draw(st.integers(1, min(4, n - 2)))
    rng = np.random.default_rng(seed)
    bulk = rng.uniform(-1.0, 1.0, n - k)
    spikes = 3.0 + np.arange(k) * 0.75 + rng.uniform(0.0, 0.25, k)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.concatenate([bulk, spikes])) @ Q.T
    return (A + A.T) / 2, k, seed


def test_deflated_atoms_are_the_top_eigenvalues_and_the_quadrature_is_exact(backend):
    # steps = n - k with full reorth exhausts the projected Krylov space: each probe's rule
    # reproduces (1 - k/n) (Pv)^T A (Pv) / |Pv|^2 + (1/n) sum_j lambda_j exactly (up to the
    # eigsh tolerance 1e-6 of the deflation basis)
    def prop(case) -> None:
        A, k, seed = case
        n = A.shape[0]
        w, Q = np.linalg.eigh(A)
        dens = specop.spectral_density(backend.asarray(A), num_probes=3, steps=n, seed=seed, reorth="full",
                                       deflate=k)
        np.testing.assert_allclose(dens.deflated, w[-k:], rtol=1e-8, atol=0)
        assert dens.nodes.shape == (3, n - k)
        P = np.eye(n) - Q[:, -k:] @ Q[:, -k:].T
        V = P @ specop.random.probes(n, 3, seed=seed)
        want = (1 - k / n) * np.einsum("ir,ij,jr->r", V, A, V) / np.einsum("ir,ir->r", V, V) + w[-k:].sum() / n
        np.testing.assert_allclose(dens.quadrature(lambda t: t), want, rtol=0, atol=1e-5 * np.abs(w).max())
        np.testing.assert_allclose(dens.quadrature(np.ones_like), 1.0, rtol=0, atol=1e-12)
        lo, hi = w[0] - 1e-6, w[-1] + 1e-6
        assert dens.cdf(lo) == pytest.approx(0.0, abs=1e-12) and dens.cdf(hi) == pytest.approx(1.0, abs=1e-12)
        # the atoms carry exactly 1/n each: the cdf jumps by k/n across the spikes, none of the bulk there
        gap_lo = w[-k - 1] + 0.5 * (w[-k] - w[-k - 1])
        assert abs(float(dens.cdf(gap_lo)) - (1 - k / n)) <= 1e-12
        grid = np.linspace(lo - 1, hi + 1, 4001)
        assert np.trapezoid(dens.evaluate(grid, sigma=0.05), grid) == pytest.approx(1.0, abs=1e-6)

    run(backend, prop, spiked_cases(), max_examples=50)


def test_deflation_counts_its_matvecs_and_matches_numpy_on_every_backend(backend):
    from conftest import Backend

    rng = np.random.default_rng(3)
    n = 40
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.concatenate([rng.uniform(-1, 1, n - 3), [4.0, 5.0, 6.0]])) @ Q.T
    A = (A + A.T) / 2
    kw = {"num_probes": 4, "steps": 15, "seed": 7, "deflate": 3}
    got = specop.spectral_density(backend.asarray(A), **kw)
    want = specop.spectral_density(Backend("numpy", np).asarray(A), **kw)
    plain = specop.spectral_density(A, num_probes=4, steps=15, seed=7)
    eig = specop.eigsh(A, 3, tol=1e-6, verify=False, seed=7)
    assert got.matvecs == want.matvecs == plain.matvecs + eig.matvecs
    np.testing.assert_allclose(got.deflated, want.deflated, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.nodes, want.nodes, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.weights, want.weights, rtol=0, atol=1e-8)


def test_deflated_run_resumes_from_a_checkpoint_to_the_identical_result(backend, tmp_path):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((25, 25))
    A = backend.asarray((M + M.T) / 10 + np.diag(np.r_[np.zeros(23), 6.0, 8.0]))
    path = tmp_path / "ck.npz"
    kw = {"num_probes": 6, "steps": 9, "seed": 4, "deflate": 2, "block": 3}

    resumed, fresh = interrupted_then_resumed(A, path, 3, **kw)
    assert resumed.matvecs == fresh.matvecs
    assert np.array_equal(resumed.deflated, fresh.deflated)
    assert np.array_equal(resumed.nodes, fresh.nodes) and np.array_equal(resumed.weights, fresh.weights)
    with pytest.raises(ValueError, match="deflate"):  # another deflation is another run
        specop.spectral_density(A, checkpoint=path, **{**kw, "deflate": 1})


def test_deflation_rejects_bad_input(backend):
    A = backend.asarray(np.diag(np.arange(1.0, 7.0)))
    for kw in ({"deflate": -1}, {"deflate": 1.5}, {"deflate": 6}, {"deflate": 2, "method": "kpm"}):
        with pytest.raises(ValueError, match="deflate"):
            specop.spectral_density(A, **kw)
