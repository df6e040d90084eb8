"""Trace estimators: unbiased within 4 standard errors, exact where theory says exact, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import strategies as st
from strategies import SymCase, run, symmetric_matrices

import specop
from specop.random import probes

# sizes of the shared JAX pool, so compiled programs are reused across tests (SLQ on JAX pays
# a dispatch per Lanczos step: its matrix is the smaller one)
N, N_SLQ = 21, 13


def _spd(n: int, seed: int, rank: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, rank or n))
    return B @ B.T / n + (0.0 if rank else 0.5) * np.eye(n)


@pytest.mark.parametrize("method, f", [("hutchinson", None), ("hutch++", None), ("slq", None), ("slq", "log")])
def test_trace_estimators_are_unbiased_within_four_standard_errors(backend, method, f):
    n = N_SLQ if method == "slq" else N
    A = _spd(n, 0)
    op = backend.asarray(A)
    exact = np.linalg.slogdet(A)[1] if f == "log" else np.trace(A)
    # the standard error is itself estimated from the samples (Student t): with >= 20 samples a
    # 4-SE miss has probability <= 1e-3 per seed; the seeds are fixed, so the test is deterministic.
    # SLQ with steps = n and full reorthogonalization is exact Gauss quadrature: only probe noise remains
    m = 60 if method == "hutch++" else 20  # Hutch++ spends 2/3 of its budget on the exact part
    for seed in range(20):
        est = specop.trace(op, method=method, f=f, num_probes=m, steps=n, reorth="full", seed=seed)
        assert abs(est.value - exact) <= 4 * est.std_error, (seed, est.value, exact, est.std_error)
        assert est.matvecs <= m * n if method == "slq" else est.matvecs == m
        assert est.method == method


def test_hutchpp_is_exact_on_low_rank_and_hutchinson_on_diagonal(backend):
    L = _spd(30, 2, rank=3)
    est = specop.trace(backend.asarray(L), method="hutch++", num_probes=9, seed=0)  # sketch of 3 spans the range
    assert abs(est.value - np.trace(L)) <= 1e-10 * np.trace(L)
    assert est.std_error <= 1e-10 * np.trace(L)
    d = np.linspace(-2.0, 3.0, 17)
    diag = specop.trace(backend.asarray(np.diag(d)), num_probes=5, seed=3)  # z_i^2 = 1 for Rademacher z
    assert abs(diag.value - d.sum()) <= 1e-12 * np.abs(d).sum()
    assert diag.matvecs == 5 and est.matvecs == 9


def test_hutchpp_is_exact_when_the_sketch_spans_everything(backend):
    def prop(case: SymCase, extra: int) -> None:
        A = case.A @ case.A.T + np.eye(case.n)  # SPD, so the trace is a safe relative scale
        m = 3 * case.n + extra  # sketch of m // 3 >= n columns: Q spans the whole space
        est = specop.trace(backend.asarray(A), method="hutch++", num_probes=m, seed=case.seed)
        tr = np.trace(A)
        assert abs(est.value - tr) <= 1e-10 * tr, (est.value, tr)
        assert est.std_error <= 1e-10 * tr or est.samples.size < 2
        assert est.matvecs == m

    run(backend, prop, symmetric_matrices(dtypes=("float64",), max_size=8, scaled=False), st.integers(0, 2),
        max_examples=25)


@pytest.mark.parametrize("f", ["inv", "exp", "sqrt", "callable"])
def test_slq_samples_equal_dense_quadratic_forms(backend, f):
    n, R, seed = N_SLQ, 3, 7
    A = _spd(n, 4)
    w, Q = np.linalg.eigh(A)
    fn = {"inv": lambda t: 1 / t, "exp": np.exp, "sqrt": np.sqrt, "callable": lambda t: t**3 - t}[f]
    F = (Q * fn(w)) @ Q.T
    est = specop.trace(backend.asarray(A), f=fn if f == "callable" else f, num_probes=R, steps=n, reorth="full",
                       seed=seed)
    V = probes(n, R, seed=seed)
    want = n * np.einsum("ir,ij,jr->r", V, F, V) / np.einsum("ir,ir->r", V, V)
    np.testing.assert_allclose(est.samples, want, rtol=1e-10)
    assert est.matvecs <= R * n


def test_slq_trace_of_matrix_exponential_matches_expm_within_four_standard_errors():
    A = _spd(16, 5)
    est = specop.trace(A, f="exp", num_probes=20, steps=16, seed=0)
    assert abs(est.value - np.trace(scipy.linalg.expm(A))) <= 4 * est.std_error + 1e-10


def test_bad_input_gives_clear_errors():
    A = _spd(6, 6)
    with pytest.raises(ValueError, match="method='slq'"):
        specop.trace(A, method="hutchinson", f="log")
    with pytest.raises(ValueError, match="f:"):
        specop.trace(A, f="cosh")
    with pytest.raises(TypeError, match="f:"):
        specop.trace(A, method="slq", f=3)
    with pytest.raises(ValueError, match="num_probes"):
        specop.trace(A, method="hutch++", num_probes=2)
    with pytest.raises(ValueError, match="method"):
        specop.trace(A, method="girard")
    with pytest.raises(ValueError, match="Ritz value"):
        specop.trace(np.diag([1.0, -2.0, 3.0]), f="log", num_probes=2, steps=3, seed=0)
    with pytest.raises(ValueError, match="square"):
        specop.trace(np.ones((3, 4)))
