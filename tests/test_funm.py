"""funm_multiply and expm_multiply against scipy.linalg.expm / sqrtm / logm and scipy's expm_multiply."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse.linalg as sla
from strategies import nan_after, orthogonal

import specop

N = 13  # a size of the JAX pool


def _spd(n: int, seed: int, lo: float = 1e-2, hi: float = 1e1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q = orthogonal(rng, n)
    A = (Q * np.geomspace(lo, hi, n)) @ Q.T
    return (A + A.T) / 2


def _dense(A: np.ndarray, f: str) -> np.ndarray:
    if f == "exp":
        return scipy.linalg.expm(A)
    if f == "sqrt":
        return scipy.linalg.sqrtm(A).real
    if f == "log":
        return scipy.linalg.logm(A).real
    if f == "inv":
        return np.linalg.inv(A)
    return np.linalg.inv(scipy.linalg.sqrtm(A).real)


@pytest.mark.parametrize("f", ["exp", "sqrt", "invsqrt", "log", "inv"])
def test_funm_multiply_matches_the_dense_matrix_function(backend, f):
    A = _spd(N, 1)
    V = np.random.default_rng(2).standard_normal((N, 2))
    want = _dense(A, f) @ V
    res = specop.funm_multiply(backend.asarray(A), backend.asarray(V), f)
    np.testing.assert_allclose(backend.to_numpy(res.y), want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    assert res.converged and res.matvecs >= res.steps and res.error_estimate >= 0
    lo, hi = res.ritz_range
    w = np.linalg.eigvalsh(A)
    assert w[0] - 1e-10 <= lo <= hi <= w[-1] + 1e-10
    one = specop.funm_multiply(backend.asarray(A), backend.asarray(V[:, 0]), f)
    assert tuple(one.y.shape) == (N,)
    np.testing.assert_allclose(backend.to_numpy(one.y), want[:, 0], rtol=1e-8, atol=1e-10 * np.abs(want).max())


def test_funm_multiply_with_a_callable_and_fixed_steps_is_exact_for_polynomials(backend):
    A = _spd(N, 3)
    v = np.random.default_rng(4).standard_normal(N)
    # a cubic is reproduced exactly by 4 Lanczos steps (Krylov space of degree 3)
    res = specop.funm_multiply(backend.asarray(A), backend.asarray(v), lambda t: t**3 - 2 * t, steps=4)
    want = A @ A @ A @ v - 2 * A @ v
    np.testing.assert_allclose(backend.to_numpy(res.y), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    assert res.steps == 4 and res.matvecs == 4


def test_error_estimate_tracks_the_true_error_and_tol_stops_early():
    n = 200
    A = _spd(n, 5, lo=1e-3, hi=1.0)  # sqrt of a cond-1e3 matrix: a slow, linear convergence
    v = np.random.default_rng(6).standard_normal(n)
    want = _dense(A, "sqrt") @ v
    for tol in (1e-4, 1e-8):
        res = specop.funm_multiply(A, v, "sqrt", tol=tol)
        err = np.linalg.norm(res.y - want)
        assert res.converged and res.steps < n
        assert err <= 10 * res.error_estimate + 1e-14 * np.linalg.norm(want)  # an estimate, not a bound
        assert err <= 100 * tol * np.linalg.norm(want)


def test_expm_multiply_matches_scipy_including_time_grids(backend):
    A = -_spd(N, 7, hi=5.0)
    B = np.random.default_rng(8).standard_normal((N, 3))
    op, Bb = backend.asarray(A), backend.asarray(B)
    np.testing.assert_allclose(backend.to_numpy(specop.expm_multiply(op, Bb)), sla.expm_multiply(A, B),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(specop.expm_multiply(op, Bb[:, 0], t=0.3)),
                               scipy.linalg.expm(0.3 * A) @ B[:, 0], rtol=1e-9, atol=1e-12)
    for endpoint in (True, False):
        got = specop.expm_multiply(op, Bb, start=0.0, stop=2.0, num=5, endpoint=endpoint)
        want = sla.expm_multiply(A, B, start=0.0, stop=2.0, num=5, endpoint=endpoint)
        assert tuple(got.shape) == want.shape == (5, N, 3)
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-9, atol=1e-12)


def test_non_positive_definite_operators_are_refused_with_numbers(backend):
    A = backend.asarray(_spd(N, 9) - 1.0 * np.eye(N))
    v = backend.asarray(np.ones(N))
    for f in ("sqrt", "invsqrt", "log", "inv"):
        with pytest.raises(ValueError, match=rf"f='{f}' needs a positive definite operator, but a Ritz value is -"):
            specop.funm_multiply(A, v, f)
    assert specop.funm_multiply(A, v, "exp").converged


def test_bad_arguments_and_non_finite_products(backend):
    A = _spd(N, 10)
    op, v = backend.asarray(A), backend.asarray(np.ones(N))
    with pytest.raises(ValueError, match="f: expected one of"):
        specop.funm_multiply(op, v, "cosh")
    with pytest.raises(TypeError, match="f: expected a name or a callable"):
        specop.funm_multiply(op, v, 3)
    with pytest.raises(ValueError, match="steps"):
        specop.funm_multiply(op, v, "exp", steps=0)
    with pytest.raises(ValueError, match="tol"):
        specop.funm_multiply(op, v, "exp", tol=-1.0)
    with pytest.raises(ValueError, match="v: operator of shape"):
        specop.funm_multiply(op, backend.asarray(np.ones(N + 1)), "exp")
    with pytest.raises(ValueError, match="start, stop"):
        specop.expm_multiply(op, v, start=0.0)
    with pytest.raises(specop.NonFiniteError, match="lanczos"):
        specop.funm_multiply(nan_after(backend, A, 2), v, "exp")
    zero = specop.funm_multiply(op, backend.asarray(np.zeros(N)), "log")
    assert zero.matvecs == 0 and not np.any(backend.to_numpy(zero.y))


def test_non_convergence_warns():
    A = _spd(300, 11, lo=1e-4, hi=1.0)
    with pytest.warns(specop.ConvergenceWarning, match="not converged after 8 Lanczos steps"):
        res = specop.funm_multiply(A, np.ones(300), "inv", maxsteps=8)
    assert not res.converged and res.steps == 8
