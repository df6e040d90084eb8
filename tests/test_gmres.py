"""gmres: restarted GMRES against ``numpy.linalg.solve`` and scipy's iteration counts.

The convergence test is on the true residual: a converged result has
``||b - A x|| <= max(rtol ||b||, atol)``, and its reported ``residual_norm`` is that residual
(recomputed here densely in float64 from the returned ``x``, equal up to the rounding of one
product, ``4 n eps ||A|| ||x||``). Then ``||x - x*|| <= ||A^{-1}|| ||b - A x||``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as sla
from hypothesis import strategies as st
from strategies import nan_after, run
from test_operators_strategies import sizes

import specop
from specop.linalg.gmres import gmres


@st.composite
def systems(draw):
    """A non-symmetric ``A = G / sqrt(n) + c I`` (``c`` from 0.5 to 3: from stagnating to fast) and ``b``."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(sizes(1, 40))
    dtype = draw(st.sampled_from(("float64", "float32")))
    c = draw(st.sampled_from((0.5, 1.5, 3.0)))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n) + c * np.eye(n)
    b = rng.standard_normal(n)
    return A.astype(dtype).astype(np.float64), b.astype(dtype).astype(np.float64), dtype


def test_gmres_solves_nonsymmetric_systems(backend):
    def prop(system, restart: int, precondition: bool) -> None:
        A, b, dtype = system
        n = A.shape[0]
        eps = float(np.finfo(dtype).eps)
        rtol = 1e-8 if dtype == "float64" else 1e-4
        M = specop.DenseOperator(backend.asarray(np.diag(1 / np.diag(A)), dtype)) if precondition else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = gmres(specop.DenseOperator(backend.asarray(A, dtype)), backend.asarray(b, dtype), rtol=rtol,
                        restart=restart, maxiter=10 * n, M=M)
        x, info = res  # unpacks like scipy
        x = backend.to_numpy(x).astype(np.float64)
        true = float(np.linalg.norm(b - A @ x))
        anorm = np.linalg.norm(A, 2)
        assert abs(res.residual_norm - true) <= 4 * n * eps * anorm * np.linalg.norm(x) + 1e-300
        if res.converged:
            assert info == 0 and true <= res.target + 4 * n * eps * anorm * np.linalg.norm(x)
            err = np.linalg.norm(x - np.linalg.solve(A, b))
            assert err <= np.linalg.norm(np.linalg.inv(A), 2) * (res.target + 8 * n * eps * anorm * np.linalg.norm(x))
        else:
            assert info > 0 and any(issubclass(c.category, specop.ConvergenceWarning) for c in caught)
            # Elman's bound: with a positive definite symmetric part H, every GMRES(m) cycle reduces
            # the residual by at least sqrt(1 - (lambda_min(H) / ||A||)^2); there it must converge
            h = float(np.linalg.eigvalsh((A + A.T) / 2)[0])
            if h > 0 and dtype == "float64":
                rate = np.sqrt(1 - (h / anorm) ** 2)
                assert rate ** (10 * n) * np.linalg.norm(b) > 0.5 * res.target, "Elman's bound promised convergence"

    few = backend.name in ("jax", "array_api_strict")
    n = 5 if backend.name == "jax" else 30 if few else 60
    run(backend, prop, systems(), st.sampled_from((1, 5, 20)), st.booleans(), max_examples=n)


def _scipy_cases():
    """scipy's test_iterative systems that gmres solves (real ones), by name."""
    N = 40
    data = np.ones((3, N))
    data[0, :] = 2
    data[1, :] = -1
    data[2, :] = -1
    poisson1d = scipy.sparse.dia_array((data, [0, -1, 1]), shape=(N, N)).tocsr()
    rng = np.random.RandomState(1234)
    rand = rng.rand(4, 4)
    data = np.ones((2, 10))
    data[0, :] = 2
    data[1, :] = -1
    nonsym = scipy.sparse.dia_array((data, [0, -1]), shape=(10, 10)).tocsr()
    diag = scipy.sparse.dia_array((np.array([[6, -5, 2, 7, -1, 10, 4, -3, -8, 9]], dtype=float), [0]),
                                  shape=(10, 10)).tocsr()
    return {"poisson1d": poisson1d, "poisson2d": scipy.sparse.kronsum(poisson1d, poisson1d).tocsr(),
            "neg-poisson1d": -poisson1d, "rand": rand, "nonsymposdef": nonsym, "rand-diag": diag,
            "vander": np.vander(np.arange(10) + 1.0)[:, ::-1]}


@pytest.mark.parametrize("name", sorted(_scipy_cases()))
@pytest.mark.parametrize("restart", [5, 20])
def test_gmres_iteration_counts_match_scipy(name, restart):
    A = _scipy_cases()[name]
    n = A.shape[0]
    b = np.arange(1.0, n + 1)
    count = [0]
    _, info_ref = sla.gmres(A, b, rtol=1e-8, restart=restart, maxiter=50,
                                callback=lambda r: count.__setitem__(0, count[0] + 1), callback_type="pr_norm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", specop.ConvergenceWarning)
        res = gmres(A, b, rtol=1e-8, restart=restart, maxiter=50)
    assert (res.info == 0) == (info_ref == 0)
    assert abs(res.iterations - count[0]) <= 3, (res.iterations, count[0])
    if res.info == 0:  # (vander is too ill-conditioned to compare x itself)
        assert np.linalg.norm(b - A @ res.x) <= 1e-8 * np.linalg.norm(b)
        assert res.residual_norm == pytest.approx(np.linalg.norm(b - A @ res.x), rel=1e-6)


def test_gmres_callbacks_and_maxiter_like_scipy():
    rng = np.random.default_rng(1)
    A = rng.random((20, 20))
    b = rng.random(20)
    seen: list = []
    res = gmres(A, b, rtol=1e-6, callback=seen.append, maxiter=2, restart=50, callback_type="pr_norm")
    assert res.info == 0 and len(seen) == res.iterations and all(isinstance(r, float) for r in seen)
    seen.clear()
    with pytest.warns(specop.ConvergenceWarning):
        res = gmres(A, b, rtol=1e-6, callback=seen.append, maxiter=2, restart=50)  # legacy: maxiter = inner steps
    assert res.info == 2 and len(seen) == 2
    xs: list = []
    with pytest.warns(specop.ConvergenceWarning, match=r"gmres: no convergence after 3 cycles"):
        res = gmres(A + np.eye(20), b, rtol=1e-12, callback=xs.append, maxiter=3, restart=2, callback_type="x")
    norms = [np.linalg.norm(b - (A + np.eye(20)) @ x) for x in xs]
    assert len(xs) == 3 and all(a >= c for a, c in itertools.pairwise(norms))
    assert res.info == 3 and res.residual_norm == pytest.approx(norms[-1], rel=1e-10)


def test_gmres_zero_rhs_and_exact_x0(backend):
    A = backend.asarray(np.diag([2.0, 3.0, 4.0]))
    res = gmres(A, backend.asarray(np.zeros(3)))
    assert res.info == 0 and res.matvecs == 0 and not np.any(backend.to_numpy(res.x))
    res = gmres(A, backend.asarray(np.array([2.0, 3.0, 4.0])), x0=backend.asarray(np.ones(3)))
    assert res.info == 0 and res.iterations == 0 and res.residual_norm == 0.0


def test_gmres_defective_matrix_does_not_claim_success():
    A = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 0]])
    b = np.array([1.0, 0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gmres(A, b, rtol=1e-8)
    assert not np.isnan(res.x).any()
    assert res.info != 0 and any(issubclass(c.category, specop.ConvergenceWarning) for c in caught)
    np.testing.assert_allclose(A @ (A @ res.x), A @ b, atol=1e-12)


def test_gmres_nan_from_matvec_names_the_iteration(backend):
    A = np.random.default_rng(0).standard_normal((30, 30)) + 8 * np.eye(30)
    with pytest.raises(specop.NonFiniteError, match=r"gmres.*iteration 4"):
        gmres(nan_after(backend, A, 3), backend.asarray(np.ones(30)), rtol=1e-12)


def test_gmres_rejects_bad_input(backend):
    A = backend.asarray(np.eye(4))
    b = backend.asarray(np.ones(4))
    with pytest.raises(ValueError, match=r"^A: expected a square"):
        gmres(backend.asarray(np.ones((3, 4))), b)
    with pytest.raises(ValueError, match=r"^b: expected shape \(4,\)"):
        gmres(A, backend.asarray(np.ones(3)))
    for name in ("rtol", "atol"):
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            gmres(A, b, **{name: -1.0})
    for name in ("restart", "maxiter"):
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            gmres(A, b, **{name: 0})
    with pytest.raises(ValueError, match=r"^callback_type: expected"):
        gmres(A, b, callback=print, callback_type="y")
    with pytest.raises(ValueError, match=r"^M: expected"):
        gmres(A, b, M=backend.asarray(np.eye(3)))
