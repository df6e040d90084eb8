"""lobpcg against ``scipy.linalg.eigh`` (standard and generalized, constraints, preconditioner).

The tolerance is an absolute bound on the residual norms ``||A x - lambda B x||`` (scipy's
convention), and the reported residual norms are the true ones of the returned vectors
(recomputed here densely, equal up to the rounding of the products). For ``B``-orthonormal
``x``, ``|lambda - lambda_j| <= ||r||_{B^-1} <= ||B^-1||^{1/2} ||r||`` for some eigenvalue
``lambda_j`` of the pencil, and ``k`` such pairs lie within ``sqrt(k)`` times that of ``k``
eigenvalues (Kahan's theorem in the ``B``-inner product). Which eigenvalues: LOBPCG from a
random block finds the extreme ones where the wanted set is separated from the rest;
the test asserts that where the gap to the first unwanted eigenvalue is at least 1e-3 of the
spread.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as sla
from hypothesis import assume
from hypothesis import strategies as st
from strategies import SymCase, nan_after, run, symmetric_matrices

import specop
from specop.linalg.lobpcg import lobpcg


def _spd(rng: np.random.Generator, n: int, cond: float) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1.0, cond, n)) @ Q.T


def test_lobpcg_matches_eigh(backend):
    def prop(case: SymCase, k: int, largest: bool, generalized: bool, constrained: bool,
             precondition: bool) -> None:
        n = case.n
        c = 2 if constrained else 0
        assume(k + c <= n // 2 and case.A.any())
        rng = case.rng(2)
        A = case.A / case.norm  # unit scale: the absolute tolerance below is relative to ||A||
        B = _spd(rng, n, 10.0).astype(case.dtype).astype(np.float64) if generalized else np.eye(n)
        Y = rng.standard_normal((n, c)).astype(case.dtype).astype(np.float64) if constrained else None
        X = rng.standard_normal((n, k)).astype(case.dtype).astype(np.float64)
        tol = 1e-6 if case.dtype == "float64" else 1e-3
        dt = case.dtype
        M = None
        if precondition:  # a crude but SPD preconditioner
            M = specop.DenseOperator(backend.asarray(np.diag(1.0 / (1.0 + np.abs(np.diag(A)))), dt))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = lobpcg(specop.DenseOperator(backend.asarray(A, dt)), backend.asarray(X, dt),
                         B=specop.DenseOperator(backend.asarray(B, dt)) if generalized else None, M=M,
                         Y=backend.asarray(Y, dt) if constrained else None, tol=tol, maxiter=300,
                         largest=largest)
        w, V = res  # unpacks like scipy
        V = backend.to_numpy(V).astype(np.float64)
        assert w.shape == (k,) and V.shape == (n, k)
        assert np.all(np.diff(w) <= 0) if largest else np.all(np.diff(w) >= 0), "not in scipy's order"
        eps = case.eps
        slack = 8 * n * eps * np.linalg.norm(B, 2) * (1 + np.abs(w).max())
        true = np.linalg.norm(A @ V - (B @ V) * w, axis=0)
        np.testing.assert_allclose(res.residual_norms, true, rtol=1e-3, atol=slack)
        if constrained:
            assert np.abs(Y.T @ B @ V).max() <= 1e3 * eps * np.linalg.norm(Y) * np.linalg.norm(B, 2)
        if not res.converged:
            assert any(issubclass(x.category, specop.ConvergenceWarning) for x in caught)
            return
        assert np.all(res.residual_norms <= tol)
        assert np.abs(V.T @ B @ V - np.eye(k)).max() <= max(1e-8, 1e3 * eps)
        # the pencil restricted to the B-orthogonal complement of Y
        if constrained:
            Z = scipy.linalg.null_space(Y.T @ B)
            lam = scipy.linalg.eigh(Z.T @ A @ Z, Z.T @ B @ Z, eigvals_only=True)
        else:
            lam = scipy.linalg.eigh(A, B, eigvals_only=True)
        want = lam[::-1][:k] if largest else lam[:k]
        rest = lam[::-1][k:] if largest else lam[k:]
        gap = np.abs(want[-1] - rest[0]) if rest.size else 1.0
        binv = 1.0 / np.linalg.eigvalsh(B)[0]
        bound = np.sqrt(k) * np.sqrt(binv) * (tol + slack)
        if gap >= 1e-3 * max(np.ptp(lam), 1e-300):
            np.testing.assert_allclose(w, want, rtol=0, atol=bound)

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, symmetric_matrices(min_size=4, max_size=30, structures=("random", "indefinite", "diagonal")),
        st.sampled_from((1, 2, 3)), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
        max_examples=5 if backend.name == "jax" else 15 if few else 30)


def test_lobpcg_default_tol_follows_the_scale_of_the_matrix(backend):
    # scipy's default n sqrt(eps) is absolute: a matrix of norm 1e-30 would be "converged" at its
    # random start. specop's default shrinks with the products, so any scale gets the same answer
    # as unit scale; an explicit tol that the start already meets while large is warned about.
    def prop(case: SymCase, k: int, e: int, largest: bool) -> None:
        n = case.n
        assume(2 * k <= n and case.A.any())
        scale = 10.0 ** e
        A = scale * case.A / case.norm
        X = case.rng(2).standard_normal((n, k))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = lobpcg(specop.DenseOperator(backend.asarray(A)), backend.asarray(X), maxiter=300, largest=largest)
        lam = np.linalg.eigvalsh(A)
        want = lam[::-1][:k] if largest else lam[:k]
        rest = lam[::-1][k:] if largest else lam[k:]
        if not res.converged:
            assert any(issubclass(x.category, specop.ConvergenceWarning) for x in caught)
            return
        assert np.all(res.residual_norms <= np.sqrt(2.2e-16) * n * min(1.0, scale))
        if not rest.size or abs(want[-1] - rest[0]) >= 1e-3 * max(np.ptp(lam), 1e-300 * scale):
            np.testing.assert_allclose(res.eigenvalues, want, rtol=0, atol=1e-5 * scale)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lobpcg(specop.DenseOperator(backend.asarray(A)), backend.asarray(X), tol=10.0 * scale, maxiter=3)
        assert any("absolute bound" in str(x.message) for x in caught), [str(x.message) for x in caught]

    run(backend, prop, symmetric_matrices(min_size=6, max_size=24, structures=("random", "indefinite"),
                                          dtypes=("float64",), scaled=False),
        st.sampled_from((1, 2)), st.sampled_from((-150, -30, -8, 0, 8, 30)), st.booleans(),
        max_examples=5 if backend.name == "jax" else 12 if backend.name == "array_api_strict" else 25)


def _elastic_rod(n):
    """scipy's test_lobpcg ElasticRod(n) generalized pencil (a rod vibration problem)."""
    L, le = 1.0, 1.0 / n
    E, rho, A = 2.1e11, 7.75e3, 1.0
    k = E * A / le * np.array([[1, -1], [-1, 1]])
    m = rho * A * le / 6.0 * np.array([[2, 1], [1, 2]])
    K = np.zeros((n + 1, n + 1))
    Mm = np.zeros((n + 1, n + 1))
    for i in range(n):
        K[i:i + 2, i:i + 2] += k
        Mm[i:i + 2, i:i + 2] += m
    return K[1:, 1:], Mm[1:, 1:], L


@pytest.mark.parametrize("problem", ["diag-largest", "diag-smallest", "diag-constrained-precond", "rod", "random"])
def test_lobpcg_iterations_within_a_few_of_scipy(problem):
    rng = np.random.default_rng(0)
    n = 100
    vals = np.arange(1.0, n + 1)
    kw: dict = {}
    if problem == "diag-largest":
        A, X, kw = np.diag(vals), rng.standard_normal((n, 3)), {"largest": True, "tol": 1e-6, "maxiter": 200}
    elif problem == "diag-smallest":
        A, X, kw = np.diag(vals), rng.standard_normal((n, 3)), {"largest": False, "tol": 1e-6, "maxiter": 200}
    elif problem == "diag-constrained-precond":  # scipy's docstring example
        A, X = np.diag(vals), rng.standard_normal((n, 3))
        kw = {"Y": np.eye(n, 3), "M": np.diag(1 / vals), "largest": False, "maxiter": 20, "tol": 1e-6}
    elif problem == "rod":
        K, Mm, _ = _elastic_rod(50)
        A, X = K, rng.standard_normal((50, 2))
        kw = {"B": Mm, "largest": False, "tol": 1e-2, "maxiter": 100}
    else:
        G = rng.standard_normal((80, 80))
        A, X, kw = (G + G.T) / 2, rng.standard_normal((80, 4)), {"tol": 1e-7, "maxiter": 300}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sla.lobpcg(A, X, retLambdaHistory=True, retResidualNormsHistory=True, **kw)
        res = lobpcg(A, X, **kw)
    ref_iters = len(ref[2]) - 3  # scipy's history: initial, one per iteration, final
    ref_converged = bool(np.max(ref[3][-1]) <= kw["tol"])
    assert res.converged or not ref_converged  # (the rod's absolute tol 1e-2 at scale 1e12: neither does)
    assert res.iterations <= ref_iters + 3, (res.iterations, ref_iters)
    lam = scipy.linalg.eigh(A, kw.get("B"), eigvals_only=True)
    if "Y" not in kw:
        want = lam[::-1][: X.shape[1]] if kw.get("largest", True) else lam[: X.shape[1]]
        np.testing.assert_allclose(res.eigenvalues, want, rtol=1e-6 if problem != "rod" else 1e-3)


def test_lobpcg_unpacks_histories_like_scipy():
    A = np.diag(np.arange(1.0, 51))
    X = np.random.default_rng(1).standard_normal((50, 2))
    with pytest.warns(specop.ConvergenceWarning, match="lobpcg: not converged after"):
        out = tuple(lobpcg(A, X, maxiter=3, tol=1e-12, retLambdaHistory=True, retResidualNormsHistory=True))
    w, V, lh, rh = out
    assert len(lh) == len(rh) and w.shape == (2,) and V.shape == (50, 2)
    np.testing.assert_array_equal(lh[-1], w)
    assert len(tuple(lobpcg(A, X, maxiter=3))) == 2


def test_lobpcg_callable_operators_and_tiny_blocks(backend):
    vals = np.arange(1.0, 9.0)
    d = backend.asarray(vals)
    X = backend.asarray(np.random.default_rng(0).standard_normal((8, 8)))
    res = lobpcg(lambda V: d[:, None] * V, X, largest=False, tol=1e-10)  # k = n: exact after one step
    np.testing.assert_allclose(res.eigenvalues, vals, rtol=1e-10)
    res = lobpcg(specop.DenseOperator(backend.asarray(np.diag(vals))), X[:, :1], tol=1e-8, maxiter=100)
    assert res.converged and abs(res.eigenvalues[0] - 8.0) <= 1e-8


def test_lobpcg_rejects_bad_input_and_nan(backend):
    A = specop.DenseOperator(backend.asarray(np.eye(6)))
    X = backend.asarray(np.random.default_rng(0).standard_normal((6, 2)))
    with pytest.raises(ValueError, match=r"^X: expected a 2-D array"):
        lobpcg(A, backend.asarray(np.ones(6)))
    with pytest.raises(ValueError, match=r"^X: expected 6 rows"):
        lobpcg(A, backend.asarray(np.ones((5, 2))))
    with pytest.raises(ValueError, match=r"^X: expected 2 linearly independent"):
        lobpcg(A, backend.asarray(np.ones((6, 2))))
    with pytest.raises(ValueError, match=r"^Y: expected linearly independent"):
        lobpcg(A, X, Y=backend.asarray(np.ones((6, 2))))
    with pytest.raises(ValueError, match=r"^Y: expected an array of shape \(6, c\)"):
        lobpcg(A, X, Y=backend.asarray(np.ones((5, 2))))
    with pytest.raises(ValueError, match=r"^B: expected"):
        lobpcg(A, X, B=backend.asarray(np.eye(5)))
    for name, value in (("tol", -1.0), ("maxiter", -1), ("largest", "yes"), ("restartControl", -2)):
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            lobpcg(A, X, **{name: value})
    G = np.random.default_rng(1).standard_normal((20, 20))
    with pytest.raises(specop.NonFiniteError, match="lobpcg"):
        lobpcg(nan_after(backend, G + G.T, 2), backend.asarray(np.random.default_rng(2).standard_normal((20, 2))))


def test_lobpcg_sparse_laplacian_with_scipy_operator():
    # the 1-D Laplacian as a scipy sparse matrix and as a scipy LinearOperator (numpy backend)
    n = 200
    L = scipy.sparse.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n), format="csr")
    X = np.random.default_rng(3).standard_normal((n, 3))
    exact = 2 - 2 * np.cos(np.pi * np.arange(n, n - 3, -1) / (n + 1))
    for op in (L, sla.aslinearoperator(L)):
        res = lobpcg(op, X, tol=1e-8, maxiter=500)
        assert res.converged
        np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-8)
