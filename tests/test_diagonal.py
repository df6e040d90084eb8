"""Diagonal estimators: unbiased, calibrated standard errors, exact where theory says, identical to the definitions."""

from __future__ import annotations

import numpy as np
import pytest
from strategies import nan_after, orthogonal

import specop
from specop.random import probes

N = 21  # a size of the JAX pool


def _spiked(n: int, seed: int, noise: float = 0.3, rank: int = 4) -> np.ndarray:
    """A few large eigenvalues over a small symmetric noise (a curvature-like matrix)."""
    rng = np.random.default_rng(seed)
    U = orthogonal(rng, n)[:, :rank]
    G = rng.standard_normal((n, n))
    return (U * np.geomspace(10.0, 50.0, rank)) @ U.T + noise * (G + G.T) / 2


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_diagonal_estimators_are_unbiased(backend, method):
    A = _spiked(N, 0)
    d = np.diag(A)
    # 40 independent runs (fixed seeds): their mean is within 4 standard errors of the truth
    runs = np.array([backend.to_numpy(specop.diagonal(backend.asarray(A), method=method, num_probes=12,
                                                      seed=s).value) for s in range(40)])
    se = runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
    assert np.all(np.abs(runs.mean(axis=0) - d) <= 4 * se + 1e-12), np.max(np.abs(runs.mean(0) - d) / se)


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_reported_standard_errors_are_calibrated(method):
    A = _spiked(40, 1, noise=1.0)
    d = np.diag(A)
    est = [specop.diagonal(A, method=method, num_probes=20, seed=s) for s in range(100)]
    err = np.array([e.value - d for e in est])
    se = np.array([e.std_error for e in est])
    ratio = np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(se**2))  # RMS error over RMS reported error
    assert 0.7 <= ratio <= 1.4, ratio


def test_hutchinson_is_exact_for_diagonal_and_xdiag_for_low_rank(backend):
    d = np.linspace(-3.0, 2.0, N)
    est = specop.diagonal(backend.asarray(np.diag(d)), num_probes=3, seed=0)
    np.testing.assert_allclose(backend.to_numpy(est.value), d, rtol=0, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(est.std_error), 0.0, atol=1e-14)
    assert est.matvecs == 3 and est.method == "hutchinson"
    sparse = np.zeros(N)
    sparse[[2, 7, 11]] = [4.0, -1.0, 2.5]  # a diagonal of rank 3
    L = _spiked(N, 2, noise=0.0, rank=3)  # a dense matrix of rank 3
    # exact once the sketch A @ Omega spans range(A): for the dense L any 4 > 3 probes do; the
    # diagonal one needs sign patterns independent on its 3 coordinates (6 probes of seed 1 are)
    for A, budget in ((np.diag(sparse), 12), (L, 8)):
        est = specop.diagonal(backend.asarray(A), method="xdiag", num_probes=budget, seed=1)
        np.testing.assert_allclose(backend.to_numpy(est.value), np.diag(A), rtol=0, atol=1e-12 * np.abs(A).max())
        assert est.matvecs <= budget and est.samples == budget // 2


def test_xdiag_equals_its_leave_one_out_definition(backend):
    A = _spiked(N, 3)
    m = 5
    Om = probes(N, m, seed=7)
    Y = A @ Om
    parts = []
    for i in range(m):
        Qi, _ = np.linalg.qr(np.delete(Y, i, axis=1))
        w = Om[:, i]
        parts.append(np.diag(Qi @ Qi.T @ A) + w * (Y[:, i] - Qi @ (Qi.T @ Y[:, i])) / w**2)
    got = specop.diagonal(backend.asarray(A), method="xdiag", num_probes=2 * m, seed=7)
    np.testing.assert_allclose(backend.to_numpy(got.value), np.mean(parts, axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(got.std_error), np.std(parts, axis=0, ddof=1) / np.sqrt(m),
                               rtol=1e-8, atol=1e-12)


def test_xdiag_beats_hutchinson_on_low_rank_plus_noise():
    A = _spiked(60, 4, noise=0.05)
    d = np.diag(A)
    errs = {m: np.mean([np.linalg.norm(specop.diagonal(A, method=m, num_probes=20, seed=s).value - d)
                        for s in range(10)]) for m in ("hutchinson", "xdiag")}
    assert errs["xdiag"] < errs["hutchinson"] / 5, errs


def test_frobenius_norm_squared_is_unbiased_and_exact_for_orthogonal_rows(backend):
    rng = np.random.default_rng(5)
    B = rng.standard_normal((N, 8))
    runs = [specop.frobenius_norm_squared(backend.asarray(B), num_probes=10, seed=s) for s in range(30)]
    vals = np.array([r.value for r in runs])
    assert abs(vals.mean() - np.sum(B * B)) <= 4 * vals.std(ddof=1) / np.sqrt(vals.size)
    assert all(r.matvecs == 10 and r.std_error > 0 for r in runs)
    Q = orthogonal(rng, 8)  # ||Q z||^2 = ||z||^2 = 8 for every Rademacher z
    est = specop.frobenius_norm_squared(backend.asarray(Q), num_probes=4, seed=0)
    assert abs(est.value - 8.0) <= 1e-12 and est.std_error <= 1e-12


def test_bad_arguments_and_non_finite_products(backend):
    A = backend.asarray(np.eye(N))
    with pytest.raises(ValueError, match="method"):
        specop.diagonal(A, method="diag++")
    with pytest.raises(ValueError, match="num_probes: expected an integer >= 4"):
        specop.diagonal(A, method="xdiag", num_probes=3)
    with pytest.raises(ValueError, match="square"):
        specop.diagonal(backend.asarray(np.ones((3, 4))))
    with pytest.raises(specop.NonFiniteError, match="diagonal"):
        specop.diagonal(nan_after(backend, np.eye(N), 0), num_probes=4)
    with pytest.raises(specop.NonFiniteError, match="frobenius_norm_squared"):
        specop.frobenius_norm_squared(nan_after(backend, np.eye(N), 0), num_probes=4)
