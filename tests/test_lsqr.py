"""lsqr against ``numpy.linalg.lstsq`` (damped: on the augmented system ``[A; damp I] x = [b; 0]``).

Stopping rule 2 of Paige & Saunders guarantees ``||A^T r - damp^2 x|| <= atol ||Abar|| ||r||``
(their Sec. 6, ``Abar = [A; damp I]``, ``||Abar||`` estimated by ``anorm``, the Frobenius norm);
rule 1 ``||r|| <= btol ||b|| + atol ||Abar|| ||x||``. Either way the normal-equations residual is
checked here densely, and the solution error is bounded by it through
``||x - x*|| <= ||A^T r - damp^2 x|| / sigma_min(Abar)^2``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as sla
from hypothesis import strategies as st
from rect_strategies import RectCase, rect_matrices
from strategies import nan_after, run

import specop
from specop.linalg.lsqr import lsqr

#: Allowed ratio between the true residuals and the recurrence's estimates at the stop.
DRIFT = 10.0


def test_lsqr_matches_lstsq(backend):
    # full-rank tall, wide and square systems with cond <= 1e2 (spread, random), also damped
    def prop(case: RectCase, damp_rel: float) -> None:
        m, n = case.shape
        damp = damp_rel * case.norm
        b = case.rng(1).standard_normal(m).astype(case.dtype).astype(np.float64)
        tol = 1e-10 if case.dtype == "float64" else 1e-5
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = lsqr(case.operator(backend), backend.asarray(b, case.dtype), damp=damp, atol=tol, btol=tol,
                       iter_lim=20 * n)
        x = backend.to_numpy(res.x).astype(np.float64)
        assert res.itn <= 20 * n and res.matvecs == res.itn and res.rmatvecs <= res.itn + 1
        Abar = np.vstack([case.A, damp * np.eye(n)])
        bbar = np.concatenate([b, np.zeros(n)])
        x_star = np.linalg.lstsq(Abar, bbar, rcond=None)[0]
        sv = np.linalg.svd(Abar, compute_uv=False)
        rbar = bbar - Abar @ x
        normal = np.linalg.norm(Abar.T @ rbar)
        slack = 8 * max(m, n) * case.eps * sv[0] * (sv[0] * np.linalg.norm(x) + np.linalg.norm(b))
        if not res.converged:
            assert case.dtype == "float32" and any(issubclass(c.category, specop.ConvergenceWarning) for c in caught)
            return
        fro = np.linalg.norm(Abar)
        # the stopping rule holds for the recurrence's estimates; the true values drift from them by
        # rounding amplified by the loss of orthogonality (no reorthogonalization, as in scipy):
        # allowed here up to a factor DRIFT
        if res.istop == 1:
            assert res.r2norm <= tol * np.linalg.norm(b) + tol * res.anorm * res.xnorm
            assert np.linalg.norm(rbar) <= DRIFT * (tol * np.linalg.norm(b) + tol * fro * np.linalg.norm(x)) + slack
        elif res.istop == 2:
            assert res.arnorm <= tol * res.anorm * res.r2norm
            assert normal <= DRIFT * tol * fro * np.linalg.norm(rbar) + slack
        # LSQR's iterates stay in range(Abar^T): the error is against the minimum-norm solution and
        # bounded through the smallest non-zero singular value (wide undamped systems have zeros)
        smin = sv[sv > 1e-12 * sv[0]][-1]
        err = np.linalg.norm(x - x_star)
        assert err <= (max(normal, DRIFT * tol * fro * np.linalg.norm(rbar)) + slack) / smin ** 2 \
            + 10 * case.eps * np.linalg.norm(x_star) * sv[0] / smin

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, rect_matrices(structures=("spread", "random")), st.sampled_from((0.0, 0.0, 1e-2, 0.5)),
        max_examples=10 if backend.name == "jax" else 30 if few else 100)


@pytest.mark.parametrize("solver", ["lsqr", "lsmr"])
def test_least_squares_are_invariant_to_the_scale_of_a(backend, solver):
    # x(s A, b) = x(A, b) / s: the stopping tests are ratios, so a matrix of norm 2**-400 or 2**400
    # takes the very same steps as at unit scale (s a power of two: scaling is exact, so the iterates
    # are too); scipy's lsqr adds eps to a denominator, its lsmr starts cond(A) from placeholders 1
    # and 1e100: both stop at once at such scales, with a wrong x
    f = getattr(specop, solver)

    def solve(A: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, int, int]:
        kw = {"iter_lim": 20 * n} if solver == "lsqr" else {"maxiter": 20 * n}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", specop.ConvergenceWarning)
            res = f(specop.aslinearoperator(backend.asarray(A)), backend.asarray(b), atol=1e-10, btol=1e-10, **kw)
        itn = res.itn if solver == "lsqr" else res.iterations
        return backend.to_numpy(res.x).astype(np.float64), int(res.istop), int(itn)

    def prop(case: RectCase, e: int) -> None:
        b = case.rng(1).standard_normal(case.shape[0])
        A = case.A / case.norm
        x1, istop1, itn1 = solve(A, b, case.shape[1])
        xs, istops, itns = solve(2.0 ** e * A, b, case.shape[1])
        assert istops == istop1 and itns == itn1, (e, istops, istop1, itns, itn1)
        np.testing.assert_allclose(xs * 2.0 ** e, x1, rtol=1e-12, atol=1e-12 * max(np.linalg.norm(x1), 1e-300))

    run(backend, prop, rect_matrices(structures=("spread", "random"), dtypes=("float64",)),
        st.sampled_from((-400, -100, 100, 400)), max_examples=4 if backend.name == "jax" else 10 if
        backend.name == "array_api_strict" else 30)


def test_lsqr_reports_like_scipy_on_the_same_problems():
    # scipy's test_lsqr problem (a random well-conditioned system) and sparse/rank-deficient ones:
    # the same istop, itn within a few, and the same estimates
    rng = np.random.default_rng(1234)
    G = rng.standard_normal((35, 35))
    problems = {
        "scipy-test": (np.eye(35) + 0.1 * G, rng.standard_normal(35)),
        "tall": (rng.standard_normal((80, 20)), rng.standard_normal(80)),
        "wide": (rng.standard_normal((20, 80)), rng.standard_normal(20)),
        "sparse": (scipy.sparse.random(300, 100, density=0.05, random_state=2, format="csr")
                   + scipy.sparse.eye(300, 100), rng.standard_normal(300)),
        "rank-deficient": (rng.standard_normal((40, 5)) @ rng.standard_normal((5, 30)), rng.standard_normal(40)),
    }
    for name, (A, b) in problems.items():
        for damp in (0.0, 0.3):
            for x0 in (None, np.ones(A.shape[1])):
                ref = sla.lsqr(A, b, damp=damp, atol=1e-10, btol=1e-10, x0=x0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", specop.ConvergenceWarning)
                    res = lsqr(A, b, damp=damp, atol=1e-10, btol=1e-10, x0=x0)
                assert res.istop == ref[1], (name, damp, res.istop, ref[1])
                assert abs(res.itn - ref[2]) <= 2, (name, damp, res.itn, ref[2])
                np.testing.assert_allclose(res.x, ref[0], rtol=0, atol=1e-6 * max(np.abs(ref[0]).max(), 1))
                # the same recurrence without reorthogonalization: rounding differs (summation order),
                # and the anorm estimate accumulates it
                np.testing.assert_allclose([res.r1norm, res.r2norm, res.xnorm], [ref[3], ref[4], ref[8]],
                                           rtol=1e-5, atol=1e-8 * np.linalg.norm(b))
                np.testing.assert_allclose(res.anorm, ref[5], rtol=1e-2)


def test_lsqr_unpacks_like_scipy_and_estimates_the_variance(backend):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((40, 8))
    b = rng.standard_normal(40)
    res = lsqr(specop.DenseOperator(backend.asarray(A)), backend.asarray(b), damp=0.1, calc_var=True,
               atol=1e-12, btol=1e-12)
    x, istop, itn, r1norm, *_, var = res
    assert len(tuple(res)) == 10
    assert istop in (1, 2) and itn == res.itn
    # LSQR's var is exact after n steps with no loss of orthogonality (Paige & Saunders Sec. 7.1)
    np.testing.assert_allclose(backend.to_numpy(var), np.diag(np.linalg.inv(A.T @ A + 0.01 * np.eye(8))), rtol=1e-6)
    np.testing.assert_allclose(r1norm, np.sqrt(np.linalg.norm(b - A @ backend.to_numpy(x)) ** 2), rtol=1e-6)


def test_lsqr_zero_rhs_and_iteration_limit(backend):
    A = specop.DenseOperator(backend.asarray(np.random.default_rng(0).standard_normal((30, 20))))
    res = lsqr(A, backend.asarray(np.zeros(30)))
    assert res.istop == 0 and res.itn == 0 and not np.any(backend.to_numpy(res.x))
    with pytest.warns(specop.ConvergenceWarning, match=r"lsqr: stopped at iteration 3.*iteration limit"):
        res = lsqr(A, backend.asarray(np.ones(30)), iter_lim=3, atol=1e-14, btol=1e-14)
    assert res.istop == 7 and not res.converged


def test_lsqr_nan_from_a_product_names_the_iteration(backend):
    A = np.random.default_rng(3).standard_normal((20, 10))
    op = nan_after(backend, A, 2, symmetric=False)
    with pytest.raises(specop.NonFiniteError, match=r"lsqr.*iteration 3"):
        lsqr(op, backend.asarray(np.ones(20)))


def test_lsqr_rejects_bad_input(backend):
    A = specop.DenseOperator(backend.asarray(np.ones((5, 4))))
    b = backend.asarray(np.ones(5))
    with pytest.raises(ValueError, match=r"^b: expected shape \(5,\)"):
        lsqr(A, backend.asarray(np.ones(4)))
    with pytest.raises(ValueError, match=r"^x0: expected shape \(4,\)"):
        lsqr(A, b, x0=backend.asarray(np.ones(5)))
    for name in ("damp", "atol", "btol", "conlim"):
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            lsqr(A, b, **{name: -1.0})
    with pytest.raises(ValueError, match=r"^iter_lim: expected"):
        lsqr(A, b, iter_lim=-1)
    with pytest.raises(ValueError, match=r"^calc_var: expected"):
        lsqr(A, b, calc_var="yes")
