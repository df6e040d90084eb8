"""specop.sparse.linalg.eigsh's other half (issue 16, item 2): which="SM", sigma with modes
normal/buckling/cayley, the generalized problem A x = lambda M x.

The problems, k, which/sigma/mode combinations, dtypes and tolerances are test_arpack's facts
(SymmetricParams' std-symmetric and gen-symmetric matrices, N = 6, RandomState(2300);
``_get_test_tolerance``; ``argsort_which`` for the transformed eigenvalues; test_symmetric_modes'
k = 2, sigma = 0.5). The test code is ours, run on every backend and checked against scipy
itself on numpy and against dense ``scipy.linalg.eigh(A, M)`` with hypothesis.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla
from hypothesis import strategies as st

import specop.sparse.linalg as ssl
from specop import backends
from tests.strategies import run

JAX_LIGHT = "JAX: eager dispatch and per-shape compilation cost seconds per case on 2 cores"
MODES = [(None, "normal"), (0.5, "normal"), (0.5, "buckling"), (0.5, "cayley")]
WHICH = ["LM", "SM", "LA", "SA", "BE"]


def _arpack_matrices() -> tuple[np.ndarray, np.ndarray]:
    """test_arpack's SymmetricParams 'Ar' and 'M' (generate_matrix hermitian pos_definite, N = 6)."""
    rng = np.random.RandomState(2300)
    a = rng.random((6, 6))
    a = (a @ a.T).astype("f").astype("d")
    m = rng.random((6, 6))
    m = (m @ m.T).astype("f").astype("d")
    return a, m


def _tolerance(typ: str, operator: bool) -> tuple[float, float]:
    """_get_test_tolerance: (tol passed to eigsh, rtol = atol of the checks)."""
    rtol = {"f": 3000 * np.finfo(np.float32).eps, "d": 2000 * np.finfo(np.float64).eps}[typ]
    if operator and typ == "f":
        return 30 * float(np.finfo(np.float32).eps), 5 * rtol
    return 0.0, rtol


def _transformed(w: np.ndarray, sigma: float | None, mode: str) -> np.ndarray:
    """argsort_which's reval: the eigenvalues of ARPACK's operator OP that ``which`` ranks."""
    if sigma is None:
        return w
    if mode == "normal":
        return 1.0 / (w - sigma)
    if mode == "cayley":
        return (w + sigma) / (w - sigma)
    return w / (w - sigma)


def _wanted(w: np.ndarray, k: int, which: str, sigma: float | None = None, mode: str = "normal") -> np.ndarray:
    """argsort_which (k of them, sorted ascending in lambda)."""
    r = _transformed(w, sigma, mode)
    ind = np.argsort(np.abs(r)) if which in ("LM", "SM") else np.argsort(r)
    if which in ("LM", "LA"):
        ind = ind[-k:]
    elif which in ("SM", "SA"):
        ind = ind[:k]
    else:
        ind = np.concatenate([ind[: k // 2], ind[k // 2 - k:]])
    return np.sort(w[ind])


def _kind(backend, x: np.ndarray, kind: str):
    if kind == "array":
        return backend.asarray(x)
    if kind == "csr":
        return scipy.sparse.csr_array(x)
    if kind == "function":
        X = backend.asarray(x)
        return ssl.LinearOperator(x.shape, lambda v: X @ v, dtype=X.dtype, like=X)
    return spla.aslinearoperator(x)


def _kinds(backend, general: bool) -> list[str]:
    kinds = ["array"] + (["csr"] if backend.name == "numpy" else [])
    if not general:  # an M given by its products: tests/test_sparse_eigsh_operator_m.py
        kinds += ["function"] + (["scipy-operator"] if backend.name == "numpy" else [])
    return kinds


@pytest.mark.parametrize("general", [False, True], ids=["std-symmetric", "gen-symmetric"])
@pytest.mark.parametrize("typ", ["f", "d"])
@pytest.mark.parametrize("sigma, mode", MODES)
def test_symmetric_modes_as_test_arpack(backend, general, typ, sigma, mode):
    """test_symmetric_modes: k = 2, every which, every matrix type, sigma None / 0.5 in each mode."""
    if backend.name == "jax" and typ == "f":
        pytest.skip(JAX_LIGHT + " (one dtype)")
    a, m = _arpack_matrices()
    a, m = a.astype(typ), m.astype(typ)
    exact = scipy.linalg.eigh(a.astype(np.float64), m.astype(np.float64) if general else None, eigvals_only=True)
    for kind in _kinds(backend, general):
        tol, rtol = _tolerance(typ, kind in ("function", "scipy-operator"))
        for which in WHICH:
            A = _kind(backend, a, kind)
            M = _kind(backend, m, kind) if general else None
            w, v = ssl.eigsh(A, 2, M, sigma=sigma, which=which, mode=mode, tol=tol,
                             rng=np.random.default_rng(1749531508689996))
            msg = f"{kind} {which} sigma={sigma} {mode}"
            assert backends.backend_name(w) == backends.backend_name(v) == backend.name, msg
            assert w.dtype == v.dtype == backend.asarray(a).dtype, msg
            wh, vh = backend.to_numpy(w).astype(np.float64), backend.to_numpy(v).astype(np.float64)
            np.testing.assert_allclose(wh, _wanted(exact, 2, which, sigma, mode), rtol=rtol, atol=rtol, err_msg=msg)
            rhs = (m.astype(np.float64) @ vh if general else vh) * wh
            np.testing.assert_allclose(a.astype(np.float64) @ vh, rhs, rtol=rtol, atol=rtol, err_msg=msg)
            if backend.name == "numpy":  # the same eigenvalues as scipy's ARPACK, where ARPACK is right
                ref = np.sort(spla.eigsh(A, 2, M, sigma=sigma, which=which, mode=mode, tol=tol)[0])
                # (float32 scipy-operator buckling LA: ARPACK's inner GMRES gives 9.66 for 9.88)
                if np.allclose(ref, _wanted(exact, 2, which, sigma, mode), rtol=rtol, atol=rtol):
                    np.testing.assert_allclose(wh, ref, rtol=rtol, atol=rtol, err_msg=msg)


def _laplacian_1d(n: int) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(scipy.sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)))


@pytest.mark.parametrize("kind", ["array", "function"])
def test_shift_invert_on_the_krylov_path(backend, kind):
    """n = 50, k = 4 near an interior sigma: the thick-restart iteration on (A - sigma I)^{-1} (LU or inner MINRES)."""
    if backend.name == "jax" or (backend.name == "array_api_strict" and kind == "function"):
        pytest.skip(JAX_LIGHT + " (array-api-strict: inner MINRES solves dispatch eagerly too)")
    rng = np.random.default_rng(7)
    g = rng.standard_normal((50, 50))
    a = np.diag(np.linspace(-3.0, 5.0, 50)) + 0.05 * (g + g.T)
    exact = np.linalg.eigvalsh(a)
    sigma = 0.4
    w, v = ssl.eigsh(_kind(backend, a, kind), 4, sigma=sigma, ncv=12)
    wh, vh = backend.to_numpy(w), backend.to_numpy(v)
    np.testing.assert_allclose(wh, np.sort(exact[np.argsort(np.abs(exact - sigma))[:4]]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a @ vh, wh * vh, atol=1e-9)
    if backend.name == "numpy":
        np.testing.assert_allclose(wh, spla.eigsh(a, 4, sigma=sigma, ncv=12)[0], rtol=1e-10)


def test_smallest_magnitude_on_the_krylov_path(backend):
    """which='SM' of an indefinite matrix (not 'SA'): regular-mode thick-restart Lanczos, as ARPACK does."""
    if backend.name == "jax":
        pytest.skip("JAX: hundreds of eager restarts")
    a = np.diag(np.concatenate([np.linspace(-4.0, -0.3, 20), np.linspace(0.2, 4.0, 20)]))
    q = np.linalg.qr(np.random.default_rng(3).standard_normal((40, 40)))[0]
    a = q @ a @ q.T
    exact = np.linalg.eigvalsh(a)
    w, v = ssl.eigsh(backend.asarray(a), 3, which="SM", ncv=20)
    wh, vh = backend.to_numpy(w), backend.to_numpy(v)
    np.testing.assert_allclose(wh, np.sort(exact[np.argsort(np.abs(exact))[:3]]), rtol=1e-9)
    np.testing.assert_allclose(a @ vh, wh * vh, atol=1e-9)
    if backend.name == "numpy":  # values alone in ARPACK's order (the least wanted first)
        ours = ssl.eigsh(a, 3, which="SM", ncv=20, return_eigenvectors=False)
        np.testing.assert_allclose(ours, spla.eigsh(a, 3, which="SM", ncv=20, return_eigenvectors=False), rtol=1e-9)


def test_sparse_generalized_and_shift_invert_as_scipy():
    """A sparse pencil (1-D Laplacian, diagonal mass matrix) in every mode: scipy's eigenvalues."""
    n = 60
    a = _laplacian_1d(n)
    m = scipy.sparse.csr_array(scipy.sparse.diags(np.linspace(1.0, 2.0, n)))
    for sigma, mode in MODES:
        for which in ("LM", "SA"):
            ours = ssl.eigsh(a, 3, m, sigma=sigma, mode=mode, which=which, ncv=16)[0]
            theirs = np.sort(spla.eigsh(a, 3, m, sigma=sigma, mode=mode, which=which, ncv=16)[0])
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, err_msg=f"{sigma} {mode} {which}")


def test_a_wrong_inverse_is_flagged_not_returned():
    """A user's OPinv that is not (A - sigma I)^{-1}: the residual check against A raises, it returns no pair."""
    a = np.diag(np.arange(1.0, 31.0))
    wrong = np.diag(1.0 / (np.arange(1.0, 31.0) - 10.3)) + 1e-3 * np.ones((30, 30))
    with pytest.raises(spla.ArpackNoConvergence, match="residual check") as info:
        ssl.eigsh(a, 3, sigma=10.3, OPinv=wrong, ncv=12)
    assert isinstance(info.value, ssl.ArpackNoConvergence)
    right = np.diag(1.0 / (np.arange(1.0, 31.0) - 10.3))
    np.testing.assert_allclose(ssl.eigsh(a, 3, sigma=10.3, OPinv=right, ncv=12)[0], [9.0, 10.0, 11.0], rtol=1e-12)


def test_bad_problems_name_the_argument():
    a, m = _arpack_matrices()
    with pytest.raises(ValueError, match=r"sigma = 1\.0.*singular"):
        ssl.eigsh(np.diag(np.arange(1.0, 9.0)), 2, sigma=1.0)
    with pytest.raises(ValueError, match="M must be symmetric positive definite"):
        ssl.eigsh(a, 2, M=-m)
    with pytest.raises(ValueError, match="A must be symmetric positive definite"):
        ssl.eigsh(a - 10 * np.eye(6), 2, M=m, sigma=0.5, mode="buckling")
    with pytest.raises(ValueError, match="M must be symmetric positive definite"):
        ssl.eigsh(spla.aslinearoperator(a), 2, M=spla.aslinearoperator(-m))


@st.composite
def _pencils(draw):
    n = draw(st.integers(3, 14))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, n))
    a = (g + g.T) / 2
    h = rng.standard_normal((n, n))
    m = h @ h.T / n + draw(st.sampled_from([0.1, 1.0])) * np.eye(n)
    k = draw(st.integers(1, n - 1))
    w = np.linalg.eigvalsh(a)
    where = draw(st.sampled_from([None, "between", "outside"]))
    sigma = None
    if where == "between":  # an interior sigma, nearer one of two neighbouring eigenvalues
        sigma = float(0.6 * w[n // 2] + 0.4 * w[n // 2 - 1])
    elif where == "outside":
        sigma = float(w[0] - 1.0)
    return a, m, k, sigma, draw(st.sampled_from(WHICH)), draw(st.booleans())


def test_generalized_and_interior_pairs_match_dense_eigh(backend):
    """Hypothesis: any pencil with SPD M, k, sigma between two eigenvalues or outside, every which:
    the eigenvalues of scipy.linalg.eigh(A, M) that ARPACK's rule picks, M-orthonormal vectors."""

    def prop(case):
        a, m, k, sigma, which, general = case
        if which == "BE" and k == 1:
            return
        mm = m if general else np.eye(a.shape[0])
        exact = scipy.linalg.eigh(a, mm, eigvals_only=True)
        w, v = ssl.eigsh(backend.asarray(a), k, backend.asarray(m) if general else None, sigma=sigma, which=which)
        wh, vh = backend.to_numpy(w), backend.to_numpy(v)
        scale = max(np.abs(exact).max(), 1.0)
        np.testing.assert_allclose(wh, _wanted(exact, k, which, sigma), rtol=1e-8, atol=1e-8 * scale)
        np.testing.assert_allclose(a @ vh - (mm @ vh) * wh, 0.0, atol=1e-8 * scale)
        np.testing.assert_allclose(vh.T @ mm @ vh, np.eye(k), atol=1e-8)

    if backend.name == "jax":
        pytest.skip(JAX_LIGHT)
    run(backend, prop, _pencils(), max_examples=40)


# ----------------------------------------------------------------------------- complex Hermitian
def _arpack_hermitian() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """test_arpack's SymmetricParams 'Ac', 'M' and 'Mc' (complex Hermitian positive definite, N = 6)."""
    rng = np.random.RandomState(2300)
    _, m = rng.random((6, 6)), rng.random((6, 6))
    m = (m @ m.T).astype("f").astype("d")
    ac = rng.random((6, 6)) + 1j * rng.random((6, 6))
    ac = (ac.conj() @ ac.T).astype("F").astype("D")
    mc = rng.random((6, 6)) + 1j * rng.random((6, 6))
    mc = (mc.conj() @ mc.T).astype("F").astype("D")
    return ac, m, mc


def _complex_kind(backend, x: np.ndarray, kind: str, typ: str):
    dt = {"F": "complex64", "D": "complex128"}[typ] if x.dtype.kind == "c" else {"F": "float32", "D": "float64"}[typ]
    x = x.astype(dt)
    if kind == "array":
        return backend.asarray(x, dt)
    return scipy.sparse.csr_array(x) if kind == "csr" else spla.aslinearoperator(x)


@pytest.mark.parametrize("case", ["std-hermitian", "gen-hermitian", "gen-hermitian-Mc"])
@pytest.mark.parametrize("typ", ["F", "D"])
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_hermitian_modes_as_test_arpack(backend, case, typ, sigma):
    """test_hermitian_modes: k = 2, which LM/SM/LA/SA, sigma None / 0.5: real eigenvalues, complex vectors."""
    if backend.name == "jax" and typ == "F":
        pytest.skip(JAX_LIGHT + " (one dtype)")
    ac, m, mc = _arpack_hermitian()
    b = {"std-hermitian": None, "gen-hermitian": m, "gen-hermitian-Mc": mc}[case]
    exact = scipy.linalg.eigh(ac, b, eigvals_only=True)
    _, rtol = _tolerance(typ.lower(), False)
    if case == "gen-hermitian-Mc":  # _get_test_tolerance: 'missing cases ... from PR 14798'
        rtol *= 5 if typ == "F" else 10
    kinds = ["array"] + (["csr"] + ([] if b is not None else ["scipy-operator"]) if backend.name == "numpy" else [])
    for kind in kinds:
        tol, _ = _tolerance(typ.lower(), kind == "scipy-operator")
        for which in ("LM", "SM", "LA", "SA"):
            A = _complex_kind(backend, ac, kind, typ)
            M = None if b is None else _complex_kind(backend, b, kind, typ)
            w, v = ssl.eigsh(A, 2, M, sigma=sigma, which=which, tol=tol, rng=np.random.default_rng(1749531706842957))
            msg = f"{kind} {which} sigma={sigma}"
            wh, vh = backend.to_numpy(w), backend.to_numpy(v)
            assert wh.dtype == {"F": np.float32, "D": np.float64}[typ] and vh.dtype.kind == "c", msg
            wh, vh = wh.astype(np.float64), vh.astype(np.complex128)
            np.testing.assert_allclose(wh, _wanted(exact, 2, which, sigma), rtol=rtol, atol=rtol, err_msg=msg)
            rhs = ((b @ vh) if b is not None else vh) * wh
            np.testing.assert_allclose(ac @ vh, rhs, rtol=rtol, atol=rtol, err_msg=msg)


def test_hermitian_krylov_path_matches_dense_eigh(backend):
    """A complex Hermitian 40 x 40 on the thick-restart path (real embedding of size 80), which LM and SA,
    and sigma inside the spectrum: numpy.linalg.eigh's eigenvalues, H-orthonormal complex vectors."""
    if backend.name == "jax":
        pytest.skip(JAX_LIGHT)
    rng = np.random.default_rng(11)
    g = rng.standard_normal((40, 40)) + 1j * rng.standard_normal((40, 40))
    h = (g + g.conj().T) / 2
    exact = np.linalg.eigvalsh(h)
    for kw in (dict(which="LM"), dict(which="SA"), dict(sigma=0.2)):
        w, v = ssl.eigsh(backend.asarray(h), 3, ncv=10, **kw)
        wh, vh = backend.to_numpy(w), backend.to_numpy(v)
        np.testing.assert_allclose(wh, _wanted(exact, 3, kw.get("which", "LM"), kw.get("sigma")), rtol=1e-10)
        np.testing.assert_allclose(h @ vh, vh * wh, atol=1e-10)
        np.testing.assert_allclose(vh.conj().T @ vh, np.eye(3), atol=1e-10)
        if backend.name == "numpy":
            np.testing.assert_allclose(wh, np.sort(spla.eigsh(h, 3, ncv=10, **kw)[0]), rtol=1e-10)


def test_hermitian_refusals_as_scipy():
    ac, _, _ = _arpack_hermitian()
    for f in (ssl.eigsh, spla.eigsh):
        with pytest.raises(ValueError, match="which='BE' cannot be used with complex matrix A"):
            f(ac, 2, which="BE")
    with pytest.raises(ValueError, match="not symmetric"):  # a complex matrix that is not Hermitian
        ssl.eigsh(ac + 1j * np.triu(np.ones((6, 6))), 2)


@st.composite
def _hermitian(draw):
    n = draw(st.integers(3, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    h = (g + g.conj().T) / 2
    w = np.linalg.eigvalsh(h)
    sigma = draw(st.sampled_from([None, float(0.6 * w[n // 2] + 0.4 * w[n // 2 - 1])]))
    return h, draw(st.integers(1, n - 1)), sigma, draw(st.sampled_from(["LM", "SM", "LA", "SA"]))


def test_complex_hermitian_pairs_match_dense_eigh(backend):
    """Hypothesis: any complex Hermitian matrix, k, which, sigma None or interior: numpy.linalg.eigh's values."""
    if backend.name == "jax":
        pytest.skip(JAX_LIGHT)

    def prop(case):
        h, k, sigma, which = case
        exact = np.linalg.eigvalsh(h)
        w, v = ssl.eigsh(backend.asarray(h), k, sigma=sigma, which=which)
        wh, vh = backend.to_numpy(w), backend.to_numpy(v)
        scale = max(np.abs(exact).max(), 1.0)
        np.testing.assert_allclose(wh, _wanted(exact, k, which, sigma), rtol=1e-8, atol=1e-8 * scale)
        np.testing.assert_allclose(h @ vh - vh * wh, 0.0, atol=1e-8 * scale)
        np.testing.assert_allclose(vh.conj().T @ vh, np.eye(k), atol=1e-8)

    run(backend, prop, _hermitian(), max_examples=30)


@pytest.mark.parametrize("general", [False, True])
def test_sigma_at_an_eigenvalue_to_rounding_returns_no_wrong_pair(backend, general):
    """sigma equal to an eigenvalue in floating point (a computed one passed back): OP's |nu| ~ 1e16 must not
    pass the other pairs on its 100 eps ||OP|| floor. numpy (LU of A - sigma M) resolves every pair as scipy
    does; an explicit inverse of the near-singular matrix (other backends) may instead raise
    ArpackNoConvergence, whose partial pairs are right: no returned pair is wrong."""
    if backend.name == "jax":
        pytest.skip(JAX_LIGHT)
    rng = np.random.default_rng(6)
    q = np.linalg.qr(rng.standard_normal((25, 25)))[0]
    a = q @ np.diag(np.linspace(-3.0, 5.0, 25)) @ q.T
    a = (a + a.T) / 2
    m = np.diag(np.linspace(1.0, 2.0, 25)) if general else None
    exact = scipy.linalg.eigh(a, m, eigvals_only=True)
    sigma = float(exact[5])
    want = np.sort(exact[np.argsort(np.abs(exact - sigma), kind="stable")[:3]])
    try:
        w, v = ssl.eigsh(backend.asarray(a), 3, None if m is None else backend.asarray(m), sigma=sigma)
    except ssl.ArpackNoConvergence as err:
        assert backend.name != "numpy", "the LU path must resolve every pair"
        w, v = err.eigenvalues, err.eigenvectors
    wh, vh = backend.to_numpy(w), backend.to_numpy(v)
    assert wh.size >= 1
    np.testing.assert_allclose(wh, want[np.argmin(np.abs(want[:, None] - wh[None, :]), axis=0)], rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(a @ vh, (vh if m is None else m @ vh) * wh, atol=1e-9)
    if backend.name == "numpy":
        np.testing.assert_allclose(wh, want, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(wh, np.sort(spla.eigsh(a, 3, m, sigma=sigma)[0]), rtol=1e-10)
        sparse = ssl.eigsh(scipy.sparse.csr_array(a), 3, None if m is None else scipy.sparse.csr_array(m),
                           sigma=sigma, return_eigenvectors=False)
        np.testing.assert_allclose(np.sort(sparse), want, rtol=1e-10, atol=1e-10)
