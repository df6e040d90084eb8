"""onenormest: Higham & Tisseur's block 1-norm estimator on every backend.

The estimate is a lower bound attained by a unit vector: ``est = ||A v||_1 <= ||A||_1`` with
``w = A v`` (up to the rounding of one product), exact for ``t >= n`` (the dense matrix, as in
scipy), and on random matrices as often exact, and as close on average, as scipy's.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
from hypothesis import strategies as st
from strategies import nan_after, run
from test_operators_strategies import Case, matrices

import specop
from specop.linalg.onenormest import onenormest


def test_onenormest_is_an_attained_lower_bound(backend):
    def prop(case: Case, t: int) -> None:
        n = case.A.shape[0]
        eps = float(np.finfo(case.dtype).eps)
        op = specop.DenseOperator(backend.asarray(case.A, case.dtype))
        res = onenormest(op, t=t, seed=case.seed, full_output=True)
        est, v, w = res
        true = float(np.abs(case.A).sum(axis=0).max())
        slack = 4 * n * eps * true
        assert est <= true + slack
        v, w = backend.to_numpy(v).astype(np.float64), backend.to_numpy(w).astype(np.float64)
        assert np.count_nonzero(v) == 1 and np.abs(v).sum() == 1.0
        np.testing.assert_allclose(w, case.A @ v, rtol=0, atol=slack + 1e-300)
        assert abs(np.abs(w).sum() - est) <= slack
        if t >= n:
            assert res.exact and abs(est - true) <= slack
        else:
            assert res.matvecs % t == 0 and res.rmatvecs % t == 0 and res.iterations <= 6
        got = onenormest(op, t=t, seed=case.seed, compute_v=True, compute_w=True)
        assert got[0] == est

    run(backend, prop, matrices(square=True, symmetric=False), st.sampled_from((1, 2, 3)),
        max_examples=15 if backend.name == "jax" else 60 if backend.name == "array_api_strict" else None)


def test_onenormest_is_as_accurate_as_scipy():
    rng = np.random.default_rng(0)
    ours, theirs, exact_ours, exact_theirs = [], [], 0, 0
    np.random.seed(0)  # noqa: NPY002 - scipy's onenormest draws from the global state
    for trial in range(60):
        n = int(rng.integers(10, 60))
        A = rng.standard_normal((n, n)) * 10.0 ** rng.uniform(-1, 1, (1, n))
        true = np.abs(A).sum(axis=0).max()
        a = onenormest(A, t=2, seed=trial) / true
        b = sla.onenormest(A, t=2) / true
        ours.append(a)
        theirs.append(b)
        exact_ours += a > 1 - 1e-12
        exact_theirs += b > 1 - 1e-12
    assert np.mean(ours) >= np.mean(theirs) - 0.03 and exact_ours >= exact_theirs - 6
    assert min(ours) >= 1 / 3  # Higham & Tisseur: usually within a factor 3 (here always)


def test_onenormest_return_values_like_scipy(backend):
    A = backend.asarray(np.array([[1.0, -2, 0], [3, 4, -5], [0, 1, 1]]))
    assert onenormest(A) == 7.0  # t = 2 < n = 3: estimated, exact here
    est, v = onenormest(A, compute_v=True)
    est2, w = onenormest(A, compute_w=True)
    assert est == est2 == 7.0 and backend.to_numpy(v).tolist() == [0.0, 1.0, 0.0]
    assert backend.to_numpy(w).tolist() == [-2.0, 4.0, 1.0]
    assert onenormest(A, t=3) == 7.0


def test_onenormest_rejects_bad_input_and_nan(backend):
    with pytest.raises(ValueError, match=r"^A: expected a square"):
        onenormest(backend.asarray(np.ones((3, 4))))
    A = backend.asarray(np.eye(5))
    with pytest.raises(ValueError, match=r"^t: expected"):
        onenormest(A, t=0)
    with pytest.raises(ValueError, match=r"^itmax: expected an integer >= 2"):
        onenormest(A, itmax=1)
    with pytest.raises(ValueError, match=r"^compute_v: expected"):
        onenormest(A, compute_v=1)
    G = np.random.default_rng(0).standard_normal((20, 20))
    with pytest.raises(specop.NonFiniteError, match="onenormest"):
        onenormest(nan_after(backend, G + G.T, 1), t=2, seed=0)
