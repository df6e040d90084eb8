"""One validation layer: every public function refuses a bad argument before any work, in one style.

A refusal reads ``"<argument>: expected <what>, got <value>"``; it comes before a code path is
chosen (the small dense path of eigsh refuses what its Krylov path refuses); a bad start vector is
blamed on ``v0``, a NaN product on the step that made it, and a user function that returns the
wrong thing on that function.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from conftest import BACKEND_NAMES, _make
from strategies import nan_after

import specop
from specop import backends


def _sym(n: int = 12, seed: int = 0) -> np.ndarray:
    G = np.random.default_rng(seed).standard_normal((n, n))
    return (G + G.T) / 2


def _style(err: pytest.ExceptionInfo, name: str) -> None:
    """The message names the argument first, then what was expected and what was got."""
    assert re.search(rf"(^|: ){re.escape(name)}: expected .+, got .+", str(err.value)), str(err.value)


SMALL = {"eigsh": {"k": 2}, "lanczos": {"steps": 3}, "spectral_density": {"num_probes": 1, "steps": 3},
         "trace": {"num_probes": 2}}
#: (function, bad keyword arguments, the argument the message must name)
BAD = [
    ("eigsh", {"tol": float("nan")}, "tol"), ("eigsh", {"tol": float("inf")}, "tol"), ("eigsh", {"tol": -1e-3}, "tol"),
    ("eigsh", {"tol": "1e-8"}, "tol"), ("eigsh", {"maxiter": 0}, "maxiter"), ("eigsh", {"maxiter": 2.5}, "maxiter"),
    ("eigsh", {"seed": -1}, "seed"), ("eigsh", {"seed": 1.5}, "seed"), ("eigsh", {"which": "sm"}, "which"),
    ("eigsh", {"dense": 1}, "dense"), ("eigsh", {"verify": "yes"}, "verify"),
    ("eigsh", {"return_eigenvectors": None}, "return_eigenvectors"), ("eigsh", {"k": 12}, "k"),
    ("lanczos", {"seed": -2}, "seed"), ("lanczos", {"recurrence_dtype": "float16"}, "recurrence_dtype"),
    ("lanczos", {"return_basis": 1}, "return_basis"), ("lanczos", {"steps": 0}, "steps"),
    ("spectral_density", {"degree": 0, "method": "kpm"}, "degree"),
    ("spectral_density", {"bounds": (0.0, 1.0, 2.0), "method": "kpm"}, "bounds"),
    ("spectral_density", {"bounds": 3.0, "method": "kpm"}, "bounds"),
    ("spectral_density", {"bounds": "ab", "method": "kpm"}, "bounds"),
    ("spectral_density", {"bounds": (0.0, float("nan")), "method": "kpm"}, "bounds"),
    ("spectral_density", {"bounds": (2.0, 1.0), "method": "kpm"}, "bounds"),
    ("spectral_density", {"seed": "7"}, "seed"), ("spectral_density", {"block": 0}, "block"),
    ("spectral_density", {"progress": 3}, "progress"), ("spectral_density", {"checkpoint": 3.5}, "checkpoint"),
    ("trace", {"seed": -1}, "seed"), ("trace", {"steps": 0, "method": "slq"}, "steps"),
    ("trace", {"check_symmetric": "no"}, "check_symmetric"), ("trace", {"f": "cosh"}, "f"),
]


@pytest.mark.parametrize(("fn", "kw", "name"), BAD, ids=[f"{f}-{n}-{i}" for i, (f, _, n) in enumerate(BAD)])
def test_bad_arguments_are_refused_in_one_style(backend, fn, kw, name):
    # a 12 x 12 operator: eigsh would take its dense path (ncv >= n), where nothing was checked before
    A = specop.DenseOperator(backend.asarray(_sym()))
    with pytest.raises((ValueError, TypeError)) as err:
        getattr(specop, fn)(A, **{**SMALL[fn], **kw})
    _style(err, name)


def test_the_dense_path_checks_v0_like_the_krylov_path(backend):
    A = specop.DenseOperator(backend.asarray(_sym()))
    for dense in ("auto", True, False):
        with pytest.raises(ValueError, match=r"v0.*\(12,\).*\(5,\)"):
            specop.eigsh(A, k=2, dense=dense, v0=backend.asarray(np.ones(5)))
        for bad in (np.inf, np.nan):
            v0 = np.ones(12)
            v0[3] = bad
            with pytest.raises(ValueError, match=r"v0: expected a finite non-zero vector, got .*NaN or Inf"):
                specop.eigsh(A, k=2, dense=dense, v0=backend.asarray(v0))
        with pytest.raises(ValueError, match="v0: expected a finite non-zero vector, got the zero vector"):
            specop.eigsh(A, k=2, dense=dense, v0=backend.asarray(np.zeros(12)))
    others = [_make(name) for name in BACKEND_NAMES if name != backends.backend_name(backend.xp)]
    for other in others:
        with pytest.raises(TypeError, match=f"v0.*{other.name}"):
            specop.eigsh(A, k=2, v0=other.asarray(np.ones(12)))
    v0 = np.ones(12)
    v0[0] = np.inf
    with pytest.raises(ValueError, match="v0"):
        specop.lanczos(A, backend.asarray(v0), steps=3)


def test_nan_in_a_small_matrix_is_a_non_finite_error(backend):
    M = _sym()
    M[2, 5] = M[5, 2] = np.nan
    with pytest.raises(specop.NonFiniteError, match=r"eigsh.*NaN or Inf"):
        specop.eigsh(specop.DenseOperator(backend.asarray(M)), k=2)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_estimators_raise_on_nan_products(backend, method):
    op = nan_after(backend, _sym(), 1)  # the second product (a matmat of a probe block) is NaN
    with pytest.raises(specop.NonFiniteError, match=f"trace \\({re.escape(method)}\\): the .*matvec"):
        specop.trace(op, method=method, num_probes=9, block=3, seed=0)


@pytest.mark.parametrize("calls", [0, 1, 4])
def test_kpm_and_batched_slq_name_the_step_of_the_nan(backend, calls):
    # probe blocks of 2: one matmat per step; the product after `calls` good ones is step `calls`
    kw = {"num_probes": 2, "block": 2, "seed": 0, "steps": 8, "degree": 14, "bounds": (-20.0, 20.0)}
    for method in ("kpm", "slq"):
        with pytest.raises(specop.NonFiniteError, match=rf"\(probe 0\).*step {calls} returned NaN"):
            specop.spectral_density(nan_after(backend, _sym(), calls), method=method, **kw)


def test_scalings_that_are_not_finite_are_refused(backend):
    A = specop.DenseOperator(backend.asarray(_sym(4)))
    for c in (0, 0.0, 1e-320, -1e-310):
        with pytest.raises(ValueError) as err:
            A / c
        _style(err, "A / c")
    with pytest.raises(ValueError) as err:
        (A * 1e200) * 1e200
    _style(err, "c * A")
    with pytest.raises(ValueError) as err:
        1e300 * (1e10 * A)
    _style(err, "c * A")
    np.testing.assert_allclose(backend.to_numpy((A / 4.0).to_dense()), _sym(4) / 4.0, rtol=1e-15)


def test_function_operator_results_are_checked(backend):
    M = _sym(5)
    a = backend.asarray(M)
    xp = backend.xp
    others = [_make(name) for name in BACKEND_NAMES if name != backends.backend_name(xp)]

    def wrong_shape(v):
        return a[:4, :] @ v

    def wrong_dtype(v):
        return xp.astype(a @ v, xp.float32)

    cases = [(wrong_shape, ValueError, r"shape \(4,"), (wrong_dtype, TypeError, "dtype float32"),
             (lambda v: [1.0] * 5, TypeError, "type list")]
    cases += [((lambda v, o=o: o.asarray(M @ backend.to_numpy(v))), TypeError, f"a {o.name} array") for o in others]
    x = backend.asarray(np.ones(5))
    for fn, kind, got in cases:
        op = specop.FunctionOperator(fn, (5, 5), like=a, symmetric=True)
        for call in (lambda op=op: op @ x, lambda op=op: op.matmat(backend.asarray(np.ones((5, 2)))),
                     lambda op=op: specop.eigsh(op, k=1, dense=False, check_symmetric=False)):
            with pytest.raises(kind) as err:
                call()
            msg = str(err.value)
            assert "FunctionOperator" in msg and re.search(got, msg), msg
            assert f"expected a {op.backend} array of shape" in msg, msg


def test_scipy_operator_results_are_checked():
    M = _sym(4)
    complex_op = specop.ScipyOperator(spla.LinearOperator((4, 4), matvec=lambda v: (M @ v) * (1 + 1j),
                                                          dtype=np.float64), symmetric=True)
    with pytest.raises(TypeError, match=r"ScipyOperator.*complex"):
        complex_op @ np.ones(4)
    short = specop.ScipyOperator(spla.LinearOperator((4, 4), matvec=lambda v: M @ v, matmat=lambda V: M[:3] @ V,
                                                     dtype=np.float64))
    with pytest.raises(ValueError, match=r"ScipyOperator.*shape \(3, 2\)"):
        short.matmat(np.ones((4, 2)))


def test_identity_size_and_probe_arguments(backend):
    for n in (0, -1, 2.0):
        with pytest.raises(ValueError) as err:
            specop.IdentityOperator(n, like=backend.xp)
        _style(err, "n")
    with pytest.raises(ValueError) as err:
        specop.random.probes(3, 1, seed=0, kind="normal")
    _style(err, "kind")


def test_density_methods_check_sigma_and_points(backend):
    A = specop.DenseOperator(backend.asarray(np.diag(np.arange(1.0, 7.0))))
    for dens in (specop.spectral_density(A, num_probes=2, steps=3, seed=0),
                 specop.spectral_density(A, method="kpm", num_probes=2, degree=6, seed=0)):
        for sigma in (0.0, -0.1, float("nan"), float("inf"), "1"):
            for call in (lambda s=sigma, d=dens: d.evaluate([1.0, 2.0], sigma=s),
                         lambda s=sigma, d=dens: d.cdf(1.5, sigma=s),
                         lambda s=sigma, d=dens: d.std_error([1.0], sigma=s)):
                with pytest.raises(ValueError) as err:  # 0 gave nan, a negative width negative densities
                    call()
                _style(err, "sigma")
        with pytest.raises(ValueError) as err:
            dens.cdf("a")
        _style(err, "x")
        with pytest.raises(ValueError) as err:
            dens.evaluate(["low", "high"])
        _style(err, "grid")
    bounds = backend.asarray(np.array([0.0, 7.0]))  # an array of the operator's backend is a pair too
    assert specop.spectral_density(A, method="kpm", num_probes=1, degree=4, bounds=bounds, seed=0).bounds == (0.0, 7.0)
