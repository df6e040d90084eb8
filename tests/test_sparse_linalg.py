"""specop.sparse.linalg is scipy.sparse.linalg on every backend (issue 16, item 1).

The problems, ``which``/``k``/dtype combinations and tolerances are the facts of scipy's own
suites (``_eigen/arpack/tests/test_arpack.py``: SymmetricParams' std-symmetric matrix,
``_get_test_tolerance``, ``test_symmetric_starting_vector``, ``test_symmetric_no_convergence``,
``test_eigsh_for_k_greater``, ``test_eigen_bad_kwargs``; ``_isolve/tests/test_iterative.py``:
IterativeParams' poisson1d/2d, rand-diag, rand-sym, rand-sym-pd cases, ``test_maxiter``,
``test_convergence``, ``test_precond_inverse``, ``test_zero_rhs``, ``test_x0_working``,
``test_x0_equals_Mb``, ``test_x0_solves_problem_exactly``); the test code is ours, run through
``specop.sparse.linalg`` on every backend and checked against scipy itself on numpy (same
signature, same answers to tolerance, same exceptions).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

import specop
import specop.sparse.linalg as ssl
from specop import backends

#: JAX runs every small array operation eagerly (milliseconds each on this 2-core CI machine) and
#: compiles each new shape: on JAX the suite runs the small problems only, one dtype where noted.
JAX_LIGHT = "JAX: small problems only (eager dispatch and per-shape compilation cost seconds per test)"


def _skip_on_jax(backend) -> None:
    if backend.name == "jax":
        pytest.skip(JAX_LIGHT)


FUNCTIONS = ["eigsh", "svds", "lobpcg", "cg", "minres", "gmres", "lsqr", "lsmr", "expm_multiply", "onenormest",
             "aslinearoperator"]


def _params(f):
    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_signature_is_scipys(name):
    assert _params(getattr(ssl, name)) == _params(getattr(spla, name))


def test_exceptions_are_scipys():
    assert issubclass(ssl.ArpackNoConvergence, spla.ArpackNoConvergence)
    assert ssl.ArpackError is spla.ArpackError
    assert set(ssl.__all__) == set(FUNCTIONS) | {"LinearOperator", "ArpackError", "ArpackNoConvergence"}
    assert all(hasattr(spla, name) for name in ssl.__all__)


# ----------------------------------------------------------------------------- eigsh
def _arpack_std_symmetric() -> np.ndarray:
    """test_arpack's SymmetricParams 'std-symmetric' matrix (N = 6, RandomState(2300), float32-exact)."""
    rng = np.random.RandomState(2300)
    M = rng.random((6, 6))
    return (M @ M.T).astype("f").astype("d")


def _tolerance(typ: str, operator: bool) -> tuple[float, float]:
    """test_arpack's _get_test_tolerance: (tol passed to eigsh, rtol = atol of the check)."""
    rtol = {"f": 3000 * np.finfo(np.float32).eps, "d": 2000 * np.finfo(np.float64).eps}[typ]
    if operator and typ == "f":
        return 30 * float(np.finfo(np.float32).eps), 5 * rtol
    return 0.0, rtol


def _wanted(w: np.ndarray, k: int, which: str) -> np.ndarray:
    """test_arpack's argsort_which for real symmetric problems (sorted ascending afterwards)."""
    if which == "LM":
        idx = np.argsort(np.abs(w))[-k:]
    elif which == "LA":
        idx = np.argsort(w)[-k:]
    elif which == "SA":
        idx = np.argsort(w)[:k]
    else:  # BE
        order = np.argsort(w)
        idx = np.concatenate([order[: k // 2], order[len(w) - (k - k // 2):]])
    return np.sort(w[idx])


def _as_kind(backend, a: np.ndarray, kind: str):
    if kind == "array":
        return backend.asarray(a)
    if kind == "function":  # an operator nobody has checked: taken as symmetric, as scipy's eigsh takes it
        M = backend.asarray(a)
        return ssl.LinearOperator(a.shape, lambda x: M @ x, dtype=M.dtype, like=M)
    if kind == "csr":
        return scipy.sparse.csr_array(a)
    return spla.aslinearoperator(a)


def _kinds(backend):
    return ["array", "function"] + (["csr", "scipy-operator"] if backend.name == "numpy" else [])


@pytest.mark.parametrize("typ", ["f", "d"])
@pytest.mark.parametrize("ncv", [None, 5])  # None: specop's default basis holds all 6 (dense path); 5: Krylov
def test_eigsh_std_symmetric_as_test_arpack(backend, typ, ncv):
    """test_symmetric_modes (sigma=None, mode='normal'): k = 2, every real `which` and matrix type."""
    if typ == "f" and ncv == 5:
        _skip_on_jax(backend)
    a = _arpack_std_symmetric().astype(typ)
    exact = np.linalg.eigvalsh(a.astype(np.float64))
    for kind in _kinds(backend):
        tol, rtol = _tolerance(typ, kind in ("function", "scipy-operator"))
        for which in ("LM", "LA", "SA", "BE"):
            A = _as_kind(backend, a, kind)
            w, v = ssl.eigsh(A, 2, which=which, tol=tol, ncv=ncv, rng=np.random.default_rng(1749531508689996))
            assert backends.backend_name(w) == backend.name == backends.backend_name(v)
            assert w.dtype == v.dtype == backend.asarray(a).dtype
            wh, vh = backend.to_numpy(w).astype(np.float64), backend.to_numpy(v).astype(np.float64)
            np.testing.assert_allclose(wh, _wanted(exact, 2, which), rtol=rtol, atol=rtol, err_msg=f"{kind} {which}")
            np.testing.assert_allclose(a @ vh, wh * vh, rtol=rtol, atol=rtol, err_msg=f"{kind} {which}")
            if backend.name == "numpy":  # the same numbers as scipy's ARPACK
                ref = spla.eigsh(A, 2, which=which, tol=tol, ncv=ncv)[0]
                assert ref.dtype == w.dtype
                np.testing.assert_allclose(wh, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("typ", ["f", "d"])
def test_eigsh_starting_vector_as_test_arpack(backend, typ):
    """test_symmetric_starting_vector: which='LM', k = 1..5, a given v0 (here also of shape (n, 1))."""
    a = _arpack_std_symmetric().astype(typ)
    exact = np.linalg.eigvalsh(a.astype(np.float64))
    _, rtol = _tolerance(typ, False)
    v0 = np.random.default_rng(1749532110418901).uniform(size=6).astype(typ)
    for k in (1, 2, 3, 4, 5):
        start = v0 if k % 2 else v0[:, None]
        w = ssl.eigsh(backend.asarray(a), k, v0=backend.asarray(start), return_eigenvectors=False)
        wh = backend.to_numpy(w).astype(np.float64)
        np.testing.assert_allclose(np.sort(wh), _wanted(exact, k, "LM"), rtol=rtol, atol=rtol)
        if backend.name == "numpy":
            np.testing.assert_allclose(wh, spla.eigsh(a, k, v0=start, return_eigenvectors=False), rtol=rtol)


def test_eigsh_values_only_in_arpacks_order():
    """return_eigenvectors=False: ARPACK's order (the least wanted first), not ascending."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 40))
    a = a + a.T
    for which in ("LM", "LA", "SA", "BE"):
        for k in (1, 4) if which != "BE" else (2, 5):
            ours = ssl.eigsh(a, k, which=which, return_eigenvectors=False)
            theirs = spla.eigsh(a, k, which=which, return_eigenvectors=False)
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, err_msg=f"{which} k={k}")
    for f in (ssl.eigsh, spla.eigsh):  # ARPACK cannot split one eigenvalue between both ends
        with pytest.raises(spla.ArpackError, match="NEV and WHICH = 'BE' are incompatible"):
            f(a, 1, which="BE")


def test_eigsh_krylov_path_on_backends(backend):
    """A problem large enough for the thick-restart iteration (n = 60, default ncv): same values as scipy."""
    _skip_on_jax(backend)
    a = np.diag(np.linspace(-3.0, 5.0, 60)) + np.diag(np.full(59, 0.3), 1) + np.diag(np.full(59, 0.3), -1)
    exact = np.linalg.eigvalsh(a)
    w, v = ssl.eigsh(backend.asarray(a), 4, which="LM")
    np.testing.assert_allclose(backend.to_numpy(w), _wanted(exact, 4, "LM"), rtol=1e-12)
    V = backend.to_numpy(v)
    np.testing.assert_allclose(a @ V, backend.to_numpy(w) * V, atol=1e-10)


def _no_convergence_matrix() -> np.ndarray:
    rng = np.random.RandomState(1234)
    M = rng.random((30, 30))
    return M @ M.T


def test_eigsh_no_convergence_as_test_arpack(backend):
    """test_symmetric_no_convergence: ArpackNoConvergence (scipy's class) with accurate partial results."""
    _skip_on_jax(backend)
    m = _no_convergence_matrix()
    _, rtol = _tolerance("d", False)
    with pytest.raises(spla.ArpackNoConvergence) as info:
        ssl.eigsh(backend.asarray(m), 4, which="LM", v0=backend.asarray(m[:, 0]), maxiter=1, ncv=9)
    err = info.value
    assert isinstance(err, ssl.ArpackNoConvergence) and str(err).startswith("ARPACK error -1: No convergence")
    w, v = backend.to_numpy(err.eigenvalues), backend.to_numpy(err.eigenvectors)
    assert 1 <= len(w) < 4 and v.shape == (30, len(w))
    np.testing.assert_allclose(m @ v, w * v, rtol=rtol, atol=rtol)
    assert not err.result.converged


def test_eigsh_warns_when_the_multiplicity_check_did_not_settle():
    """Converged pairs whose check for missed copies hit maxiter: scipy's return values, and specop's warning."""
    d = np.concatenate([[5.0, 5.0, 5.0], np.linspace(0.0, 4.99, 100)])
    with pytest.warns(specop.ConvergenceWarning, match="multiplicity check did not settle"):
        w, _ = ssl.eigsh(np.diag(d), 2, which="LA", maxiter=40, ncv=6, tol=1e-6, rng=0)
    np.testing.assert_allclose(w, [5.0, 5.0], rtol=1e-6)


def test_eigsh_k_not_below_n_as_scipy(backend):
    """test_eigsh_for_k_greater: a dense array gets all n pairs of eigh with a RuntimeWarning; others TypeError."""
    rng = np.random.default_rng(1234)
    a = rng.random((4, 4))
    a = a + a.T
    for k in (4, 5):
        with pytest.warns(RuntimeWarning, match="k >= N"):
            w, v = ssl.eigsh(backend.asarray(a), k)
        ref_w, ref_v = scipy.linalg.eigh(a)
        np.testing.assert_allclose(backend.to_numpy(w), ref_w, rtol=1e-13)
        np.testing.assert_allclose(np.abs(backend.to_numpy(v)), np.abs(ref_v), atol=1e-12)
        with pytest.warns(RuntimeWarning):
            assert backend.to_numpy(ssl.eigsh(backend.asarray(a), k, return_eigenvectors=False)).shape == (4,)
    for A in (scipy.sparse.csr_array(a), spla.aslinearoperator(a), specop.DenseOperator(backend.asarray(a))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(TypeError, match=r"Cannot use scipy\.linalg\.eigh"):
                ssl.eigsh(A, 4)
            if not isinstance(A, specop.LinearOperator):
                with pytest.raises(TypeError, match=r"Cannot use scipy\.linalg\.eigh"):
                    spla.eigsh(A, 4)


BAD_EIGSH = [
    (dict(k=0), "k must be greater than 0."),
    (dict(k=2, which="XX"), "which must be one of LM SM LA SA BE"),
    (dict(k=2, ncv=2), "ncv must be k<ncv<=n, ncv=2"),
    (dict(k=2, maxiter=0), "maxiter must be positive, maxiter=0"),
    (dict(k=2, OPinv=np.eye(6)), "OPinv should not be specified with sigma = None."),
    (dict(k=2, Minv=np.eye(6)), "Minv should not be specified with M = None."),
    (dict(k=2, sigma=0.5, mode="foo"), "unrecognized mode 'foo'"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_EIGSH)
def test_eigsh_bad_arguments_as_scipy(kwargs, message):
    a = _arpack_std_symmetric()
    for f in (ssl.eigsh, spla.eigsh):
        with pytest.raises(ValueError) as info:
            f(a, **kwargs)
        assert str(info.value) == message
    with pytest.raises(ValueError, match="expected square matrix"):
        ssl.eigsh(np.zeros((2, 3)))


def test_eigsh_with_an_operator_m_matches_scipy():
    """An M given by its products only (B-inner-product Lanczos): the same values as scipy."""
    a = _arpack_std_symmetric()
    M = spla.aslinearoperator(np.eye(6))
    w = ssl.eigsh(spla.aslinearoperator(a), 2, M=M)[0]
    np.testing.assert_allclose(np.sort(w), np.sort(spla.eigsh(a, 2, M=M)[0]), rtol=1e-10)


def test_eigsh_refuses_an_asymmetric_matrix():
    """scipy's ARPACK silently returns numbers for a non-symmetric matrix; specop refuses it."""
    a = np.triu(np.ones((8, 8)))
    with pytest.raises(ValueError, match="symmetric"):
        ssl.eigsh(a, 2)


# ----------------------------------------------------------------------------- svds, lobpcg
def _rect(m: int = 20, n: int = 12, typ: str = "d") -> np.ndarray:
    return np.random.default_rng(7).standard_normal((m, n)).astype(typ)


@pytest.mark.parametrize("which", ["LM", "SM"])
def test_svds_as_scipy(backend, which):
    if which == "SM":
        _skip_on_jax(backend)
    for typ, rtol in (("d", 1e-10), ("f", 1e-4))[: 1 if backend.name == "jax" else 2]:
        a = _rect(typ=typ)
        u, s, vh = ssl.svds(backend.asarray(a), 3, which=which)
        assert s.dtype == u.dtype == vh.dtype == backend.asarray(a).dtype
        ref = spla.svds(a, 3, which=which, rng=0)[1]
        np.testing.assert_allclose(backend.to_numpy(s), ref, rtol=rtol)
        U, S, VH = (backend.to_numpy(x).astype(np.float64) for x in (u, s, vh))
        np.testing.assert_allclose(a @ VH.T, U * S, atol=rtol * S.max() * 10)
    a = _rect()
    values = ssl.svds(backend.asarray(a), 3, which=which, return_singular_vectors=False)
    np.testing.assert_allclose(backend.to_numpy(values), spla.svds(a, 3, which=which, return_singular_vectors=False))
    u, s, vh = ssl.svds(backend.asarray(a), 3, which=which, return_singular_vectors="u")
    assert vh is None and tuple(u.shape) == (20, 3)
    u, s, vh = ssl.svds(backend.asarray(a), 3, which=which, return_singular_vectors="vh")
    assert u is None and tuple(vh.shape) == (3, 12)


BAD_SVDS = [
    dict(k=0), dict(k=12), dict(k=3, which="XX"), dict(k=3, solver="foo"), dict(k=3, ncv=3), dict(k=3, tol=-1),
    dict(k=3, maxiter=0), dict(k=3, return_singular_vectors="x"), dict(k=3, v0=np.ones(20)),
]


@pytest.mark.parametrize("kwargs", BAD_SVDS, ids=lambda kw: ",".join(f"{k}={v!r}"[:12] for k, v in kw.items()))
def test_svds_bad_arguments_as_scipy(kwargs):
    a = _rect()
    with pytest.raises(ValueError) as theirs:
        spla.svds(a, **kwargs)
    with pytest.raises(ValueError) as ours:
        ssl.svds(a, **kwargs)
    assert _message(ours.value) == _message(theirs.value)


def _message(exc: Exception) -> tuple:
    """An error message with a printed set (whose order follows string hashing) as (text, set)."""
    text = str(exc)
    if "{" not in text:
        return (text, None)
    head, rest = text.split("{", 1)
    body, tail = rest.split("}", 1)
    return (head + tail, frozenset(item.strip() for item in body.split(",")))


def test_svds_propack_interface():
    """solver='propack' allows k = min(A.shape) and takes a left start vector v0 of shape (m,)."""
    a = _rect()
    s = ssl.svds(a, 12, solver="propack", return_singular_vectors=False)
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False)[::-1], rtol=1e-10)
    s = ssl.svds(a, 3, solver="propack", v0=np.ones(20), return_singular_vectors=False)
    np.testing.assert_allclose(s, spla.svds(a, 3, return_singular_vectors=False), rtol=1e-10)
    with pytest.raises(NotImplementedError, match="options"):
        ssl.svds(a, 3, solver="lobpcg", options={"maxiter": 3})


def test_lobpcg_as_scipy(backend):
    _skip_on_jax(backend)
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.standard_normal((40, 40)))[0]
    a = (q * np.arange(1.0, 41.0)) @ q.T
    X = rng.standard_normal((40, 3))
    for largest in (True, False):
        w, v = ssl.lobpcg(backend.asarray(a), backend.asarray(X), largest=largest, tol=1e-8, maxiter=300)
        assert backends.backend_name(w) == backend.name and w.dtype == v.dtype
        ref = spla.lobpcg(a, X, largest=largest, tol=1e-8, maxiter=300)[0]
        np.testing.assert_allclose(backend.to_numpy(w), ref, rtol=1e-9)
    out = ssl.lobpcg(backend.asarray(a), backend.asarray(X), tol=1e-8, maxiter=300, retLambdaHistory=True,
                     retResidualNormsHistory=True)
    assert len(out) == 4 == len(spla.lobpcg(a, X, tol=1e-8, maxiter=300, retLambdaHistory=True,
                                            retResidualNormsHistory=True))


# ----------------------------------------------------------------------------- solvers
def _poisson1d(n: int = 40) -> scipy.sparse.csr_array:
    return scipy.sparse.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1]).tocsr()


def _iterative_cases() -> list[tuple[str, np.ndarray, tuple[str, ...]]]:
    """test_iterative's IterativeParams cases for real matrices: (name, dense matrix, solvers that apply)."""
    p1 = _poisson1d().toarray()
    p2 = scipy.sparse.kronsum(_poisson1d(), _poisson1d()).toarray()
    rand_diag = np.diag([6.0, -5, 2, 7, -1, 10, 4, -3, -8, 9])
    rng = np.random.RandomState(1234)
    rand = rng.rand(4, 4)
    rng = np.random.RandomState(1234)
    sym = rng.rand(4, 4)
    sym = sym + sym.T
    pd = np.random.RandomState(1234).rand(9, 9)  # np.random.seed(1234); np.random.rand(9, 9) in scipy
    pd = pd @ pd.T
    nonsym = 2 * np.eye(10) - np.eye(10, k=-1)
    return [
        ("poisson1d", p1, ("cg", "minres", "gmres")),
        ("neg-poisson1d", -p1, ("minres", "gmres")),
        ("poisson2d", p2, ("cg",)),
        ("rand-diag", rand_diag, ("minres", "gmres")),
        ("rand", rand, ("gmres",)),
        ("rand-sym", sym, ("minres", "gmres")),
        ("rand-sym-pd", pd, ("cg", "minres", "gmres")),
        ("nonsymposdef", nonsym, ("gmres",)),
    ]


CASES = _iterative_cases()


@pytest.mark.parametrize(("name", "a", "solvers"), CASES, ids=[c[0] for c in CASES])
def test_solvers_converge_as_test_iterative(backend, name, a, solvers):
    """test_convergence: info == 0 and ||A x - b|| <= rtol ||b|| (rtol 1e-8; 1e-2 in float32), as scipy."""
    big = a.shape[0] > 100
    if big and backend.name != "numpy":
        pytest.skip("the 1600 x 1600 Poisson 2-D case runs as a scipy sparse matrix on numpy (dense: seconds)")
    if name != "rand-sym":
        _skip_on_jax(backend)
    for typ, rtol in (("d", 1e-8), ("f", 1e-2))[: 1 if backend.name == "jax" else 2]:
        A = scipy.sparse.csr_array(a.astype(typ)) if big else backend.asarray(a.astype(typ))
        b = backend.asarray(np.arange(a.shape[0], dtype=typ))
        for solver in solvers:
            x, info = getattr(ssl, solver)(A, b, x0=0 * b, rtol=rtol)
            assert info == 0, f"{solver} {typ}"
            assert tuple(x.shape) == (a.shape[0],) and x.dtype == A.dtype
            xh = backend.to_numpy(x).astype(np.float64)
            bh = np.arange(a.shape[0], dtype=np.float64)
            assert np.linalg.norm(a @ xh - bh) <= np.linalg.norm(bh) * rtol * (1.0001 if typ == "d" else 2)
            if backend.name == "numpy" and typ == "d":
                ref, ref_info = getattr(spla, solver)(a, bh, rtol=rtol)
                assert ref_info == 0
                np.testing.assert_allclose(xh, ref, rtol=1e3 * rtol, atol=1e3 * rtol * np.abs(ref).max())


@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_maxiter_and_callback_as_test_iterative(backend, solver):
    """test_maxiter: maxiter=1 calls the callback once (a vector of shape (n,)) and returns info == 1."""
    a = _poisson1d(10).toarray()
    A, b = backend.asarray(a), backend.asarray(np.arange(10.0))
    seen = []
    _, info = getattr(ssl, solver)(A, b, x0=0 * b, rtol=1e-12, maxiter=1,
                                   callback=lambda xk: seen.append(tuple(xk.shape)))
    assert seen == [(10,)] and info == 1
    _, ref_info = getattr(spla, solver)(a, np.arange(10.0), rtol=1e-12, maxiter=1)
    assert ref_info == info


def test_gmres_callback_and_maxiter_as_scipy(backend):
    a = _iterative_cases()[4][1]
    A, b = backend.asarray(a), backend.asarray(np.arange(4.0))
    xs = []
    x, info = ssl.gmres(A, b, rtol=1e-12, restart=2, maxiter=1, callback=xs.append, callback_type="x")
    ref_x, ref_info = spla.gmres(a, np.arange(4.0), rtol=1e-12, restart=2, maxiter=1)
    assert info == ref_info == 1 and len(xs) == 1 and tuple(xs[0].shape) == (4,)
    np.testing.assert_allclose(backend.to_numpy(x), ref_x, rtol=1e-10)
    for f, M in ((ssl.gmres, A), (spla.gmres, a)):  # test_maxiter: a callback without callback_type
        with pytest.warns(DeprecationWarning, match=".*called without specifying `callback_type`.*"):
            f(M, b if f is ssl.gmres else np.arange(4.0), rtol=1e-12, maxiter=1, callback=lambda r: None)
        with pytest.raises(ValueError, match="Unknown callback_type: 'foo'"):
            f(M, b if f is ssl.gmres else np.arange(4.0), callback=print, callback_type="foo")


@pytest.mark.parametrize("solver", ["cg", "gmres"])
def test_atol_as_test_iterative(solver):
    """test_atol: every rtol/atol in {0, 1e-9 .. 1e2, inf}, with badly scaled preconditioners: info == 0 and
    ||A x - b|| <= max(atol, rtol ||b||)."""
    rng = np.random.default_rng(168441431005389)
    a = rng.uniform(size=[10, 10])
    a = a @ a.T + 10 * np.eye(10)
    b = 1e3 * rng.uniform(size=10)
    tols = np.r_[0, np.logspace(-9, 2, 7), np.inf]
    m0 = rng.standard_normal(size=(10, 10))
    m0 = m0 @ m0.T
    for M in (None, 1e-6 * m0, 1e6 * m0):
        for rtol in tols:
            for atol in tols:
                if rtol == 0 and atol == 0:
                    continue
                x, info = getattr(ssl, solver)(a, b, M=M, rtol=rtol, atol=atol)
                assert info == 0
                assert np.linalg.norm(a @ x - b) <= 1.00025 * max(atol, rtol * np.linalg.norm(b))


@pytest.mark.parametrize("solver", ["cg", "minres", "gmres"])
def test_preconditioner_as_test_iterative(backend, solver):
    """test_precond_inverse: M = A^{-1} solves at once (a few products), M a function operator."""
    if solver != "cg":
        _skip_on_jax(backend)
    a = np.random.RandomState(1234).rand(9, 9)
    a = a @ a.T
    inv = np.linalg.inv(a)
    Ab, invb = backend.asarray(a), backend.asarray(inv)
    counter = [0]

    def matvec(x):
        counter[0] += 1
        return Ab @ x

    A = ssl.LinearOperator((9, 9), matvec, rmatvec=matvec, like=Ab)
    M = ssl.LinearOperator((9, 9), lambda x: invb @ x, like=Ab)
    b = np.arange(9.0)
    x, info = getattr(ssl, solver)(A, backend.asarray(b), M=M, rtol=1e-8)
    assert info == 0 and counter[0] <= 4  # scipy's bound is 3; specop adds the true-residual product
    assert np.linalg.norm(a @ backend.to_numpy(x) - b) <= 1e-8 * np.linalg.norm(b)


@pytest.mark.parametrize("solver", ["cg", "minres", "gmres"])
def test_zero_rhs_and_x0_as_test_iterative(backend, solver):
    """test_zero_rhs, test_x0_working, test_x0_equals_Mb, test_x0_solves_problem_exactly."""
    if solver != "cg":
        _skip_on_jax(backend)
    rng = np.random.default_rng(1684414984100503)
    a = rng.random((10, 10))
    a = a @ a.T + 10 * np.eye(10)
    A = backend.asarray(a)
    f = getattr(ssl, solver)
    zero, ones = backend.asarray(np.zeros(10)), backend.asarray(np.ones(10))
    for tol in (1e-10, 1e-4, 1e2):
        x, info = f(A, zero, rtol=tol)
        assert info == 0 and np.abs(backend.to_numpy(x)).max() <= 1e-15
        x, info = f(A, zero, rtol=tol, x0=ones)
        assert info == 0 and np.abs(backend.to_numpy(x)).max() <= tol
    b = rng.random(10)
    x, info = f(A, backend.asarray(b), x0=backend.asarray(rng.random(10)[:, None]), rtol=1e-6)
    assert info == 0 and tuple(x.shape) == (10,)
    assert np.linalg.norm(a @ backend.to_numpy(x) - b) <= 1e-5 * np.linalg.norm(b)
    x, info = f(A, backend.asarray(b), x0="Mb", rtol=1e-8)
    assert info == 0 and np.linalg.norm(a @ backend.to_numpy(x) - b) <= 1e-8 * np.linalg.norm(b)
    rhs = backend.asarray(np.array([-1.0, -1.0]))
    x, info = f(backend.asarray(np.eye(2)), rhs, x0=rhs)
    assert info == 0
    np.testing.assert_allclose(backend.to_numpy(x), [-1, -1])


@pytest.mark.parametrize("solver", ["cg", "minres", "gmres", "lsqr", "lsmr"])
def test_solver_shapes_as_scipy(solver):
    """b of shape (n, 1) gives x of shape (n,); any other shape is scipy's ValueError."""
    a = _iterative_cases()[6][1]
    for b in (np.ones((9, 2)), np.ones(8)):
        with pytest.raises(ValueError) as theirs:
            getattr(spla, solver)(a, b)
        with pytest.raises(ValueError) as ours:
            getattr(ssl, solver)(a, b)
        if solver not in ("lsqr", "lsmr"):  # scipy's lsqr/lsmr fail later, with numpy's own messages
            assert str(ours.value) == str(theirs.value)
    x = getattr(ssl, solver)(a, np.ones((9, 1)))[0]
    assert x.shape == getattr(spla, solver)(a, np.ones((9, 1)))[0].shape == (9,)


def test_minres_check_and_show(capsys):
    a = _iterative_cases()[5][1]
    ssl.minres(a, np.ones(4), check=True, show=True)
    assert "minres" in capsys.readouterr().out
    asym = np.triu(np.ones((4, 4))) + np.eye(4)
    for f in (ssl.minres, spla.minres):
        with pytest.raises(ValueError, match="non-symmetric matrix"):
            f(asym, np.ones(4), check=True)


def test_cg_reports_negative_curvature():
    """info < 0: cg met p^T A p <= 0 on an indefinite matrix (scipy iterates on without saying so)."""
    _, info = ssl.cg(np.diag([1.0, -1.0, 2.0]), np.ones(3))
    assert info < 0


def test_least_squares_as_scipy(backend):
    """lsqr's 10-tuple and lsmr's 8-tuple, same numbers as scipy on an overdetermined system."""
    _skip_on_jax(backend)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((30, 12))
    b = rng.standard_normal(30)
    A, bb = backend.asarray(a), backend.asarray(b)
    for damp in (0.0, 0.5):
        ours, theirs = ssl.lsqr(A, bb, damp=damp), spla.lsqr(a, b, damp=damp)
        assert len(ours) == len(theirs) == 10 and ours[1] == theirs[1]
        np.testing.assert_allclose(backend.to_numpy(ours[0]), theirs[0], rtol=1e-8)
        np.testing.assert_allclose(ours[3:9], theirs[3:9], rtol=1e-6, atol=1e-10)
        ours, theirs = ssl.lsmr(A, bb, damp=damp), spla.lsmr(a, b, damp=damp)
        assert len(ours) == len(theirs) == 8 and ours[1] == theirs[1]
        np.testing.assert_allclose(backend.to_numpy(ours[0]), theirs[0], rtol=1e-8)
        np.testing.assert_allclose(ours[3:], theirs[3:], rtol=1e-6, atol=1e-10)


# ----------------------------------------------------------------------------- matrix functions
def test_expm_multiply_as_scipy(backend):
    _skip_on_jax(backend)
    a = _poisson1d(20).toarray() / 4
    b = np.linspace(-1.0, 1.0, 20)
    A, B = backend.asarray(a), backend.asarray(b)
    np.testing.assert_allclose(backend.to_numpy(ssl.expm_multiply(A, B)), spla.expm_multiply(a, b), rtol=1e-9)
    grid = ssl.expm_multiply(A, backend.asarray(np.stack([b, b[::-1]], axis=1)), start=0, stop=1, num=3)
    ref = spla.expm_multiply(a, np.stack([b, b[::-1]], axis=1), start=0, stop=1, num=3)
    assert tuple(grid.shape) == ref.shape == (3, 20, 2)
    np.testing.assert_allclose(backend.to_numpy(grid), ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="symmetric"):
        ssl.expm_multiply(backend.asarray(np.triu(a)), B)


def test_onenormest_as_scipy(backend):
    a = _iterative_cases()[6][1]
    est = ssl.onenormest(backend.asarray(a))
    assert est == pytest.approx(spla.onenormest(a)) and est == pytest.approx(np.abs(a).sum(axis=0).max())
    est, v, w = ssl.onenormest(backend.asarray(a), compute_v=True, compute_w=True)
    np.testing.assert_allclose(backend.to_numpy(w), a @ backend.to_numpy(v))


def test_docs_page_code_runs():
    """The code blocks of docs/howto/scipy_dropin.md run as written (one namespace, in order)."""
    pytest.importorskip("torch")
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "howto" / "scipy_dropin.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "scipy_dropin.md", "exec"), namespace)  # the page's own code


def test_a_vector_of_another_backend_names_the_argument_and_both_backends(backend):
    """b, x0, v0 of another backend than A: TypeError naming the argument and both backends, before any arithmetic
    (cg/minres/gmres used to fail in result_type with an AttributeError, eigsh with sigma in a reshape)."""
    other_name = "torch" if backend.name != "torch" else "numpy"
    other = pytest.importorskip(other_name) if other_name == "torch" else np
    a = np.diag(np.arange(1.0, 9.0))
    A, ones = backend.asarray(a), other.ones(8, dtype=other.float64)
    calls = {
        "b": [lambda: ssl.cg(A, ones), lambda: ssl.minres(A, ones), lambda: ssl.gmres(A, ones),
              lambda: ssl.lsqr(A, ones), lambda: ssl.lsmr(A, ones)],
        "x0": [lambda: ssl.cg(A, backend.asarray(np.ones(8)), x0=ones)],
        "v0": [lambda: ssl.eigsh(A, 2, v0=ones), lambda: ssl.eigsh(A, 2, sigma=3.3, v0=ones)],
    }
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(TypeError) as info:
                fn()
            message = str(info.value)
            assert message.startswith(f"{name}:"), message
            assert backends.backend_name(A) in message and other_name in message, message
