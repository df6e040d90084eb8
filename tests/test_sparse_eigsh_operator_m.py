"""specop.sparse.linalg.eigsh with an M given only by its products (issue 16, item 2): Lanczos in
the M-inner product (mode 2, with Minv or an inner CG solve) and the sigma modes, checked against
dense ``scipy.linalg.eigh(A, M)`` with hypothesis on every backend, and against scipy's ARPACK on
test_arpack's generalized problems (SymmetricParams 'Ar', 'M'; k = 2; sigma None / 0.5)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse.linalg as spla
from hypothesis import strategies as st

import specop
import specop.sparse.linalg as ssl
from tests.strategies import run
from tests.test_sparse_eigsh_modes import MODES, WHICH, _arpack_matrices, _wanted

CASES = [(None, "normal", False), (None, "normal", True), (0.3, "normal", False), (0.3, "buckling", False),
         (0.3, "cayley", False)]


def _operator(backend, x: np.ndarray):
    X = backend.asarray(x)
    return ssl.LinearOperator(x.shape, lambda v: X @ v, dtype=X.dtype, like=X)  # matvec only


@st.composite
def _pencils(draw):
    n = draw(st.integers(8, 24))
    seed = draw(st.integers(0, 2**31 - 1))
    cond = draw(st.sampled_from([1.0, 1e2, 1e4]))
    diagonal = draw(st.booleans())
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, n))
    a = (g + g.T) / 2
    d = np.geomspace(1.0, cond, n)
    if diagonal:
        m = np.diag(rng.permutation(d))
    else:
        q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        m = (q * d) @ q.T
        m = (m + m.T) / 2
    return a, m, seed


@pytest.mark.parametrize("sigma, mode, with_minv", CASES)
def test_operator_m_matches_dense_generalized_eigh(backend, sigma, mode, with_minv):
    """k = 3 LA pairs of A x = lambda M x, M by its matvec only: values, residuals and X^T M X = I."""
    def prop(case):
        a, m, seed = case
        exact = scipy.linalg.eigh(a, m, eigvals_only=True)
        if sigma is not None and np.min(np.abs(exact - sigma)) < 1e-3:
            return  # sigma too close to an eigenvalue: A - sigma M nearly singular
        if mode == "buckling" and np.linalg.eigvalsh(a)[0] <= 0:
            a = a + (1.0 - np.linalg.eigvalsh(a)[0]) * np.eye(len(a))  # buckling whitens by A: A SPD
            exact = scipy.linalg.eigh(a, m, eigvals_only=True)
        kw = {} if sigma is None else {"sigma": sigma, "mode": mode}
        if with_minv:
            kw["Minv"] = _operator(backend, np.linalg.inv(m))
        w, v = ssl.eigsh(backend.asarray(a), 3, M=_operator(backend, m), which="LM", tol=1e-10,
                         rng=np.random.default_rng(seed), **kw)
        wh, vh = backend.to_numpy(w).astype(np.float64), backend.to_numpy(v).astype(np.float64)
        want = np.sort(_wanted(exact, 3, "LM", sigma, mode))
        scale = np.abs(exact).max()
        np.testing.assert_allclose(wh, want, rtol=1e-7, atol=1e-7 * scale)
        np.testing.assert_allclose(a @ vh, (m @ vh) * wh, atol=1e-6 * scale * np.abs(vh).max())
        b = a if mode == "buckling" and sigma is not None else m
        np.testing.assert_allclose(vh.T @ b @ vh, np.eye(3), atol=1e-6)
    run(backend, prop, _pencils(), max_examples=4 if backend.name == "jax" else 15)


@pytest.mark.parametrize("sigma, mode", MODES)
def test_arpack_generalized_cases_with_operator_m(sigma, mode):
    """test_arpack's gen-symmetric problem, M as a scipy LinearOperator: the same values as scipy's ARPACK."""
    a, m = _arpack_matrices()
    exact = scipy.linalg.eigh(a, m, eigvals_only=True)
    M = spla.aslinearoperator(m)
    for which in WHICH:
        w, v = ssl.eigsh(a, 2, M, sigma=sigma, which=which, mode=mode, rng=np.random.default_rng(3))
        np.testing.assert_allclose(w, _wanted(exact, 2, which, sigma, mode), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(a @ v, (m @ v) * w, atol=1e-8)
        if sigma is None:  # scipy's ARPACK with an operator M needs Minv in mode 2 (it refuses one without)
            ref = spla.eigsh(a, 2, m, which=which)[0]
        else:
            ref = spla.eigsh(a, 2, M, sigma=sigma, which=which, mode=mode,
                             OPinv=spla.aslinearoperator(np.linalg.inv(a - sigma * m)))[0]
        np.testing.assert_allclose(np.sort(w), np.sort(ref), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("which, sigma", [("LA", None), ("LM", None), ("LM", 10.0)])
def test_operator_m_finds_every_copy_of_a_repeated_eigenvalue(backend, which, sigma):
    """A = C^T D C, M = C^T C (pencil eigenvalues diag D) with the wanted top value repeated 3 times, M by its
    matvec only: every copy comes back (the multiplicity check of the B-inner-product Lanczos), as dense eigh."""
    n, k = 80, 4
    rng = np.random.default_rng(16)
    c = np.linalg.qr(rng.standard_normal((n, n)))[0] * np.geomspace(1.0, 3.0, n)  # well-conditioned
    d = np.concatenate([[3.0, 3.0, 3.0, 2.8], np.linspace(-2.6, 2.6, n - 4)])  # small gaps: rounding alone
    # does not reveal the copies (sigma = 10 keeps them small for shift-invert too)
    a, m = c.T @ (d[:, None] * c), c.T @ c
    a, m = (a + a.T) / 2, (m + m.T) / 2
    exact = scipy.linalg.eigh(a, m, eigvals_only=True)
    # exact inverses by their products (inner solves would perturb every product differently and let
    # rounding reveal the copies): the Krylov space of one start vector then holds one vector per eigenspace
    kw = ({"Minv": _operator(backend, np.linalg.inv(m))} if sigma is None else
          {"sigma": sigma, "OPinv": _operator(backend, np.linalg.inv(a - sigma * m))})
    w, v = ssl.eigsh(backend.asarray(a), k, M=_operator(backend, m), which=which, tol=1e-10,
                     rng=np.random.default_rng(0), **kw)
    wh, vh = backend.to_numpy(w).astype(np.float64), backend.to_numpy(v).astype(np.float64)
    np.testing.assert_allclose(wh, np.sort(_wanted(exact, k, which, sigma, "normal")), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(wh, [2.8, 3.0, 3.0, 3.0], rtol=1e-8)
    np.testing.assert_allclose(vh.T @ m @ vh, np.eye(k), atol=1e-6)


def test_operator_m_multiplicity_check_out_of_restarts_warns(backend):
    """The check has its own restart budget: a deflated top value 1e-4 below the wanted one does not settle in
    maxiter = 1 restart (ConvergenceWarning, the converged value still returned); in 2 it does, silently."""
    n = 80
    rng = np.random.default_rng(16)
    c = np.linalg.qr(rng.standard_normal((n, n)))[0] * np.geomspace(1.0, 3.0, n)
    d = np.concatenate([[3.0, 2.9999, 2.9998], np.linspace(-1.0, 2.9, n - 3)])
    a, m = c.T @ (d[:, None] * c), c.T @ c
    a, m = (a + a.T) / 2, (m + m.T) / 2
    x = np.linalg.solve(c, np.eye(n)[:, 0])  # A x = 3 M x: the main run converges at once, the check needs restarts
    kw = {"M": _operator(backend, m), "Minv": _operator(backend, np.linalg.inv(m)), "which": "LA", "tol": 1e-10,
          "v0": backend.asarray(x)}
    with pytest.warns(specop.ConvergenceWarning, match="multiplicity check did not settle"):
        w = ssl.eigsh(backend.asarray(a), 1, maxiter=1, rng=np.random.default_rng(0), **kw)[0]
    np.testing.assert_allclose(backend.to_numpy(w), [3.0], rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", specop.ConvergenceWarning)
        w = ssl.eigsh(backend.asarray(a), 1, maxiter=2, rng=np.random.default_rng(0), **kw)[0]
    np.testing.assert_allclose(backend.to_numpy(w), [3.0], rtol=1e-9)
