"""cg, minres, lsmr, InverseOperator and the preconditioners against dense numpy/scipy oracles.

Every property runs on every backend. Bounds: a returned ``x`` is accepted when its *true*
residual ``||b - A x||`` (numpy, float64, on the host) meets ``max(rtol ||b||, atol)``, up to
the rounding of the operator's own products (``c eps ||A|| ||x||``, ``eps`` of its dtype), and
the reported ``residual_norms`` equal that true residual to the same rounding; the error
against ``numpy.linalg.solve`` is then bounded by ``||r|| / sigma_min``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse.linalg as sla
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import nan_after, orthogonal
from test_operators_strategies import _size_pool, sizes

import specop

JAX_N = 13  # a size of the JAX pool (compiled programs are reused across tests)


#: JAX compiles each primitive anew for every shape (~0.1 s each on 2 cores; a solve meets ~25 of
#: them per block shape): on JAX the sizes come from this pool and a property gets three examples
JAX_POOL = (JAX_N,)


def _examples(backend: Any, n: int) -> int:
    return 3 if backend.name == "jax" else n


def run(backend: Any, prop: Any, *strategies: Any, max_examples: int) -> None:
    """``prop`` on hypothesis examples (at most the profile's number); sizes from JAX_POOL on JAX."""
    n = min(max_examples, settings.default.max_examples)
    _size_pool[0] = JAX_POOL if backend.name == "jax" else None
    try:
        given(*strategies)(settings(settings.default, max_examples=n)(prop))()
    finally:
        _size_pool[0] = None


@dataclass(frozen=True)
class System:
    """A drawn symmetric system: host float64 matrix exactly representable in ``dtype``, right-hand sides."""

    A: np.ndarray
    b: np.ndarray
    dtype: str
    eigenvalues: np.ndarray
    rtol: float

    @property
    def eps(self) -> float:
        return float(np.finfo(self.dtype).eps)

    @property
    def norm(self) -> float:
        return float(np.max(np.abs(self.eigenvalues)))

    def op(self, backend: Any) -> specop.DenseOperator:
        return specop.DenseOperator(backend.asarray(self.A, self.dtype))

    def rhs(self, backend: Any) -> Any:
        return backend.asarray(self.b, self.dtype)


@st.composite
def systems(draw: Any, kind: str = "spd", dtypes: tuple[str, ...] = ("float64", "float32"), max_size: int = 24,
            block: bool = True, max_cond: int = 8) -> System:
    """SPD (log-uniform spectrum, condition up to 1e8), indefinite, or rank-deficient consistent systems."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(sizes(1, max_size))
    dtype = draw(st.sampled_from(("float64",) if _size_pool[0] else dtypes))  # JAX: one dtype, fewer programs
    rng = np.random.default_rng(seed)
    top = max_cond if dtype == "float64" else 2
    cond = 10.0 ** draw(st.integers(0, top))
    scale = 10.0 ** draw(st.integers(-3, 3))
    d = np.exp(rng.uniform(0.0, np.log(cond), n))
    d[: min(2, n)] = [1.0, cond][: min(2, n)]  # the extremes are attained
    if kind == "indefinite":
        d = d * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    if kind == "rank_deficient":
        d[rng.random(n) < 0.4] = 0.0
    Q = orthogonal(rng, n)
    A = scale * ((Q * d) @ Q.T)
    A = ((A + A.T) / 2).astype(dtype).astype(np.float64)
    w = np.linalg.eigvalsh(A)
    k = draw(st.sampled_from((0, 1, 3))) if block else 0
    B = rng.standard_normal((n, max(k, 1)))
    if kind == "rank_deficient":  # consistent: b in the range of A
        B = A @ rng.standard_normal((n, max(k, 1)))
        if not np.any(B):
            B = np.zeros_like(B)
    b = B[:, 0] if k == 0 else B
    b = b.astype(dtype).astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    rtol = max(draw(st.sampled_from((1e-5, 1e-8))), 1e3 * eps * max(cond, 1.0))
    return System(A, b, dtype, w, rtol)


def _check_solution(sys: System, res: Any, backend: Any, shift: float = 0.0) -> None:
    """True residual meets the tolerance; reported residual norms are the true ones; x near solve()."""
    x = backend.to_numpy(res.x).astype(np.float64)
    assert x.shape == sys.b.shape
    M = sys.A - shift * np.eye(sys.A.shape[0])
    B, X = sys.b.reshape(len(sys.b), -1), x.reshape(len(sys.b), -1)
    R = B - M @ X
    true = np.linalg.norm(R, axis=0)
    bnorm = np.linalg.norm(B, axis=0)
    slack = 30 * sys.eps * (np.linalg.norm(M, 2) * np.linalg.norm(X, axis=0) + bnorm) * np.sqrt(len(sys.b))
    reported = np.asarray(res.residual_norms).reshape(-1)
    assert np.all(np.abs(reported - true) <= slack), (reported, true, slack)
    assert res.converged and res.info == 0
    assert np.all(true <= sys.rtol * bnorm + slack), (true / np.maximum(bnorm, 1e-300), sys.rtol)
    w = np.linalg.eigvalsh(M)
    smin = np.min(np.abs(w))
    if smin > 1e-12 * np.max(np.abs(w)):
        exact = np.linalg.solve(M, B)
        assert np.all(np.linalg.norm(X - exact, axis=0) <= (true + slack) / smin * (1 + 1e-6) + 1e-300)


def test_cg_solves_spd_systems_to_the_requested_tolerance(backend):
    def prop(sys: System) -> None:
        res = specop.cg(sys.op(backend), sys.rhs(backend), rtol=sys.rtol, maxiter=40 * len(sys.b))
        _check_solution(sys, res, backend)
        cols = np.asarray(res.column_iterations).reshape(-1)
        # one product per iteration and column, plus a true residual per column and restart (on the host)
        assert cols.sum() <= res.matvecs <= cols.sum() + 4 * cols.size
        hist = np.asarray(res.residual_history)
        assert hist.shape[0] == res.iterations + 1

    run(backend, prop, systems("spd"), max_examples=_examples(backend, 30))


@pytest.mark.parametrize("kind", ["indefinite", "spd", "rank_deficient"])
def test_minres_solves_symmetric_systems_to_the_requested_tolerance(backend, kind):
    def prop(sys: System) -> None:
        res = specop.minres(sys.op(backend), sys.rhs(backend), rtol=sys.rtol, maxiter=40 * len(sys.b))
        _check_solution(sys, res, backend)

    run(backend, prop, systems(kind), max_examples=_examples(backend, 25))


def test_cg_solves_consistent_rank_deficient_systems_with_the_minimum_norm_solution(backend):
    def prop(sys: System) -> None:
        res = specop.cg(sys.op(backend), sys.rhs(backend), rtol=sys.rtol, maxiter=40 * len(sys.b))
        _check_solution(sys, res, backend)
        x = backend.to_numpy(res.x).reshape(len(sys.b), -1)
        pinv = np.linalg.pinv(sys.A, rcond=1e-10) @ sys.b.reshape(len(sys.b), -1)
        tol = 1e3 * sys.eps * np.max(np.abs(sys.eigenvalues)) / max(np.min(np.abs(sys.eigenvalues[
            np.abs(sys.eigenvalues) > 0]), initial=np.inf), 1e-300) + 1e-4
        # from x0 = 0 the iterates stay in the range of A: the pseudo-inverse solution
        assert np.all(np.linalg.norm(x - pinv, axis=0) <= tol * (np.linalg.norm(pinv, axis=0) + 1e-300) + 1e-12)

    run(backend, prop, systems("rank_deficient", dtypes=("float64",)), max_examples=_examples(backend, 20))


def test_minres_with_shift_solves_the_shifted_system(backend):
    def prop(sys: System, shift: float) -> None:
        s = shift * sys.norm
        if np.min(np.abs(sys.eigenvalues - s)) < 1e-3 * sys.norm:
            return
        res = specop.minres(sys.op(backend), sys.rhs(backend), shift=s, rtol=sys.rtol, maxiter=40 * len(sys.b))
        _check_solution(sys, res, backend, shift=s)

    run(backend, prop, systems("indefinite", dtypes=("float64",)), st.floats(-1.5, 1.5),
        max_examples=_examples(backend, 20))


def _scipy_count(solver: Any, A: np.ndarray, b: np.ndarray, rtol: float) -> int:
    """Iterations scipy needs until ``||b - A x_k|| <= rtol ||b||`` (its iterates, our test)."""
    hist: list[float] = []
    solver(A, b, rtol=1e-14, maxiter=40 * len(b), callback=lambda xk: hist.append(np.linalg.norm(b - A @ xk)))
    ok = np.flatnonzero(np.asarray(hist) <= rtol * np.linalg.norm(b))
    return int(ok[0]) + 1 if ok.size else len(hist)


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_iteration_counts_are_within_a_few_of_scipys(backend, name):
    kind = "spd" if name == "cg" else "indefinite"
    # minres: near cond 1e8 its least-squares test (||A r|| <= sqrt(eps) ||A|| ||r||) can fire on a
    # plateau of a consistent system; the restart that follows then costs extra iterations
    max_cond = 8 if name == "cg" else 6

    def prop(sys: System) -> None:
        if not np.any(sys.b):
            return
        res = getattr(specop, name)(sys.op(backend), sys.rhs(backend), rtol=sys.rtol, maxiter=40 * len(sys.b))
        theirs = _scipy_count(getattr(sla, name), sys.A, sys.b, sys.rtol)
        # never more than a few beyond scipy's; on ill-conditioned systems rounding may let either need fewer
        assert res.iterations <= theirs + max(3, theirs // 10), (res.iterations, theirs)

    run(backend, prop, systems(kind, dtypes=("float64",), block=False, max_cond=max_cond),
        max_examples=_examples(backend, 20))


@pytest.mark.parametrize("name", ["cg", "minres"])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), jacobi=st.booleans(), shifted=st.booleans())
@settings(max_examples=30, deadline=None)
def test_numpy_iterates_equal_scipys_bit_for_bit(name, seed, n, jacobi, shifted):
    # one numpy column takes the vector path, scipy's arithmetic: the same iterates, bit for bit
    rng = np.random.default_rng(seed)
    Q = orthogonal(rng, n)
    d = np.geomspace(1.0, 1e3, n) * (rng.choice([-1.0, 1.0], n) if name == "minres" else 1.0)
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(n)
    kw: dict = {"maxiter": 2 * n}
    if jacobi:
        kw["M"] = np.diag(1.0 / np.abs(np.diag(A)))
    if shifted and name == "minres":
        kw["shift"] = float(rng.uniform(-0.5, 0.5))
    ours: list[np.ndarray] = []
    theirs: list[np.ndarray] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = getattr(specop, name)(A, b, rtol=1e-10, callback=lambda x: ours.append(np.array(x[:, 0])), **kw)
        getattr(sla, name)(A, b, rtol=1e-14, callback=lambda x: theirs.append(np.array(x)), **kw)
    assume(res.matvecs == res.iterations + 1)  # one round: a restart from the true residual is not scipy's
    steps = min(len(ours), len(theirs))
    assert steps == res.iterations >= 1
    for i in range(steps):
        assert np.array_equal(ours[i], theirs[i]), (i, np.abs(ours[i] - theirs[i]).max())


def test_blocks_equal_column_by_column_solves(backend):
    # one column on the host runs the vector path (host scalars, in-place updates), a block the masked
    # kernels: both, with and without a (Jacobi) preconditioner, must give the same solves
    def prop(sys: System, name: str, jacobi: bool) -> None:
        if sys.b.ndim == 1:
            return
        kw: dict = {"rtol": sys.rtol, "maxiter": 40 * len(sys.b)}
        if jacobi:
            kw["M"] = backend.asarray(np.diag(1.0 / np.abs(np.diag(sys.A))).astype(sys.dtype))
        fn = getattr(specop, name)
        block = fn(sys.op(backend), sys.rhs(backend), **kw)
        xb = backend.to_numpy(block.x)
        for j in range(sys.b.shape[1]):
            one = fn(sys.op(backend), backend.asarray(sys.b[:, j], sys.dtype), **kw)
            xj = backend.to_numpy(one.x)
            scale = np.linalg.norm(sys.b[:, j]) / np.min(np.abs(sys.eigenvalues)) + 1e-300
            assert np.linalg.norm(xb[:, j] - xj) <= 4 * sys.rtol * scale + 1e-300
            assert abs(int(block.column_iterations[j]) - one.iterations) <= max(3, one.iterations // 10)
        assert block.matvecs <= sum(int(i) for i in block.column_iterations) + 2 * sys.b.shape[1] + \
            (0 if backend.name in ("numpy", "torch", "jax", "array_api_strict") else 8 * sys.b.shape[1])

    run(backend, prop, systems("spd"), st.sampled_from(["cg", "minres"]), st.booleans(),
        max_examples=_examples(backend, 20))


def test_lsmr_matches_lstsq_on_tall_wide_and_rank_deficient_matrices(backend):
    def prop(seed: int, m: int, n: int, rank: int, damp: float, k: int) -> None:
        rng = np.random.default_rng(seed)
        r = min(rank, m, n)
        A = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
        B = rng.standard_normal((m, max(k, 1)))
        b = B[:, 0] if k == 0 else B
        res = specop.lsmr(specop.DenseOperator(backend.asarray(A)), backend.asarray(b), damp=damp, atol=1e-12,
                          btol=1e-12, maxiter=20 * (m + n))
        Aa = np.vstack([A, damp * np.eye(n)])
        ba = np.vstack([B, np.zeros((n, B.shape[1]))])
        want = np.linalg.lstsq(Aa, ba, rcond=None)[0]
        x = backend.to_numpy(res.x).reshape(n, -1)
        s = np.linalg.svd(Aa, compute_uv=False)
        smin = np.min(s[s > 1e-10 * s[0]]) if np.any(s > 0) else 1.0
        assert res.converged
        assert np.all(np.linalg.norm(x - want, axis=0) <= 1e-6 * (s[0] / smin) ** 2 * (np.linalg.norm(want, axis=0)
                                                                                         + 1e-12))
        R = B - A @ x
        true = np.sqrt(np.sum(R * R, axis=0) + damp**2 * np.sum(x * x, axis=0))
        np.testing.assert_allclose(np.asarray(res.residual_norms).reshape(-1), true, rtol=1e-10, atol=1e-12)

    run(backend, prop, st.integers(0, 2**32 - 1), sizes(1, 15), sizes(1, 15), st.integers(1, 15),
        st.sampled_from([0.0, 0.0, 0.3]), st.sampled_from([0, 2]), max_examples=_examples(backend, 20))


def test_lsmr_with_x0_and_damping_solves_for_x(backend):
    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((20, 8)), rng.standard_normal(20)
    want = np.linalg.solve(A.T @ A + 0.25 * np.eye(8), A.T @ b)
    res = specop.lsmr(backend.asarray(A), backend.asarray(b), damp=0.5, x0=backend.asarray(np.ones(8)),
                      atol=1e-12, btol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(res.x), want, rtol=1e-8, atol=1e-10)


def test_cg_stops_at_negative_curvature_and_reports_the_direction(backend):
    n = JAX_N
    rng = np.random.default_rng(0)
    Q = orthogonal(rng, n)
    d = np.linspace(1.0, 2.0, n)
    d[3] = -0.5
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(n)
    with pytest.warns(specop.ConvergenceWarning, match="negative curvature"):
        res = specop.cg(backend.asarray(A), backend.asarray(b))
    x, info = res
    assert info < 0 and not res.converged and res.info == -1
    p = backend.to_numpy(res.negative_curvature)
    assert p @ A @ p <= 0 < p @ p
    # the returned iterate is the one before the failing step and its residual is reported truly
    assert abs(float(res.residual_norms) - np.linalg.norm(b - A @ backend.to_numpy(x))) <= 1e-10 * np.linalg.norm(b)


@pytest.mark.parametrize("name", ["cg", "minres", "lsmr"])
def test_nan_from_a_matvec_raises_naming_the_iteration(backend, name):
    n = JAX_N
    rng = np.random.default_rng(1)
    A = orthogonal(rng, n) * np.linspace(1, 3, n) @ orthogonal(rng, n).T
    A = A @ A.T
    with pytest.raises(specop.NonFiniteError, match=rf"{name}: .*iteration 3"):
        getattr(specop, name)(nan_after(backend, A, 5 if name == "lsmr" else 2),
                              backend.asarray(rng.standard_normal(n)))


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_non_convergence_warns_with_numbers_and_returns_converged_false(backend, name):
    n = JAX_N
    A = np.diag(np.logspace(0, 6, n))
    b = np.ones(n)
    with pytest.warns(specop.ConvergenceWarning, match=r"not converged: relative residual.*maxiter = 3"):
        res = getattr(specop, name)(backend.asarray(A), backend.asarray(b), maxiter=3, rtol=1e-10)
    assert not res.converged and res.info == 3 and res.iterations == 3
    assert abs(float(res.residual_norms) - np.linalg.norm(b - A @ backend.to_numpy(res.x))) <= 1e-9 * 1e6


def test_zero_right_hand_side_and_exact_x0_need_no_iteration(backend):
    A = np.diag(np.arange(1.0, 6.0))
    res = specop.cg(backend.asarray(A), backend.asarray(np.zeros(5)))
    assert res.converged and res.iterations == 0 and res.matvecs == 0
    assert not np.any(backend.to_numpy(res.x))
    x = np.arange(5.0)
    res = specop.minres(backend.asarray(A), backend.asarray(A @ x), x0=backend.asarray(x))
    assert res.converged and res.iterations == 0 and res.matvecs == 1
    np.testing.assert_array_equal(backend.to_numpy(res.x), x)
    for fn in (specop.cg, specop.minres):  # b = 0 with a nonzero x0: x = 0 at once (a tolerance 0 never met)
        B = np.stack([np.zeros(5), np.ones(5)], axis=1)
        res = fn(backend.asarray(A), backend.asarray(B), x0=backend.asarray(np.ones((5, 2))), rtol=1e-12)
        assert res.converged and res.column_iterations[0] == 0
        np.testing.assert_allclose(backend.to_numpy(res.x), np.linalg.solve(A, B), atol=1e-12)


def test_bad_arguments_name_themselves(backend):
    A = backend.asarray(np.eye(4))
    b = backend.asarray(np.ones(4))
    for fn in (specop.cg, specop.minres):
        with pytest.raises(ValueError, match="b: operator of shape"):
            fn(A, backend.asarray(np.ones(5)))
        with pytest.raises(ValueError, match="rtol: expected a finite number >= 0"):
            fn(A, b, rtol=-1.0)
        with pytest.raises(ValueError, match="rtol"):
            fn(A, b, rtol=float("nan"))
        with pytest.raises(ValueError, match="atol"):
            fn(A, b, atol=-1e-3)
        with pytest.raises(ValueError, match="maxiter"):
            fn(A, b, maxiter=0)
        with pytest.raises(ValueError, match="x0: expected shape"):
            fn(A, b, x0=backend.asarray(np.ones(3)))
        with pytest.raises(ValueError, match="M: expected shape"):
            fn(A, b, M=backend.asarray(np.eye(3)))
        with pytest.raises(TypeError, match="callback"):
            fn(A, b, callback=3)
        with pytest.raises(ValueError, match="b: expected finite"):
            fn(A, backend.asarray(np.array([1.0, np.nan, 0.0, 0.0])))
        with pytest.raises(ValueError, match="square"):
            fn(backend.asarray(np.ones((3, 4))), backend.asarray(np.ones(3)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="numpy"):
            specop.cg(A, np.ones(4))
    with pytest.raises(ValueError, match="damp"):
        specop.lsmr(A, b, damp=-1.0)
    with pytest.raises(ValueError, match="method"):
        specop.solve(A, b, method="gmres")


def test_callback_sees_every_iterate(backend):
    A = np.diag(np.arange(1.0, 9.0))
    seen: list[np.ndarray] = []
    res = specop.cg(backend.asarray(A), backend.asarray(np.ones(8)), rtol=1e-12,
                    callback=lambda xk: seen.append(backend.to_numpy(xk)))
    assert len(seen) == res.iterations
    np.testing.assert_allclose(seen[-1][:, 0], backend.to_numpy(res.x))


# ----------------------------------------------------------------- InverseOperator, solve, preconditioners
def _spd(n: int, seed: int, cond: float = 1e3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q = orthogonal(rng, n)
    A = (Q * np.logspace(0, np.log10(cond), n)) @ Q.T
    return (A + A.T) / 2


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_inverse_operator_inside_eigsh_gives_the_smallest_eigenvalues(backend, method):
    n, mu = JAX_N, 1e-2
    A = _spd(n, 5)
    inv = specop.InverseOperator(backend.asarray(A), damping=mu, method=method, rtol=1e-10)
    res = specop.eigsh(inv, k=3, tol=1e-8, seed=0)
    got = np.sort(1.0 / res.eigenvalues - mu)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(A)[:3], rtol=1e-7)
    assert inv.inner_matvecs > res.matvecs and inv.solves >= res.matvecs
    assert inv.is_symmetric and inv.shape == (n, n)


def test_inverse_operator_matmat_is_the_damped_inverse(backend):
    n, mu = JAX_N, 0.3
    A = _spd(n, 6) - 0.5 * np.eye(n)  # indefinite; A + mu I stays indefinite too
    V = np.random.default_rng(0).standard_normal((n, 3))
    for method in ("minres",) + (("cg",) if np.linalg.eigvalsh(A + mu * np.eye(n)).min() > 0 else ()):
        inv = specop.InverseOperator(backend.asarray(A), damping=mu, method=method, rtol=1e-12)
        X = backend.to_numpy(inv.matmat(backend.asarray(V)))
        np.testing.assert_allclose(X, np.linalg.solve(A + mu * np.eye(n), V), rtol=1e-8, atol=1e-10)


def test_inverse_operator_refuses_an_inexact_inverse(backend):
    A = _spd(13, 7, cond=1e6)
    inv = specop.InverseOperator(backend.asarray(A), damping=0.0, maxiter=3)
    with pytest.raises(specop.InnerSolveError, match=r"missed rtol = 1e-08: relative residual"):
        inv.matvec(backend.asarray(np.ones(13)))
    warn = specop.InverseOperator(backend.asarray(A), maxiter=3, on_failure="warn")
    with pytest.warns(specop.ConvergenceWarning, match="missed rtol"):
        warn.matvec(backend.asarray(np.ones(13)))
    indefinite = specop.InverseOperator(backend.asarray(A - 2 * np.eye(13)))
    with pytest.raises(specop.InnerSolveError, match="not positive definite"):
        indefinite.matvec(backend.asarray(np.ones(13)))


def test_inverse_operator_refuses_a_non_symmetric_a(backend):
    # the inverse is declared symmetric and eigsh trusts it: a non-symmetric A would give plausible
    # wrong eigenvalues there, so it is refused at construction (stored or merely claimed symmetric)
    n = 13
    N = _spd(n, 8)
    N[0, 5] += 0.5
    with pytest.raises(ValueError, match=r"InverseOperator: A: expected a symmetric operator"):
        specop.InverseOperator(backend.asarray(N))
    Nb = backend.asarray(N)
    claimed = specop.FunctionOperator(lambda v: Nb @ v, (n, n), like=Nb, symmetric=True)
    with pytest.raises(ValueError, match=r"InverseOperator: .*y\.\(A x\)"):
        specop.InverseOperator(claimed)
    inv = specop.InverseOperator(backend.asarray(N), method="minres", check_symmetric=False, rtol=1e-12)
    assert inv.is_symmetric  # used as is: the caller vouches; minres on it then misses rtol, and says so
    with pytest.raises(specop.InnerSolveError, match="missed rtol"):
        inv.matvec(backend.asarray(np.ones(n)))


def test_spectral_and_nystrom_preconditioners_cut_cg_iterations(backend):
    n, mu = JAX_N, 1e-3
    rng = np.random.default_rng(2)
    Q = orthogonal(rng, n)
    d = np.concatenate([np.logspace(2, 4, 4), rng.uniform(0, 1, n - 4)])  # a few outliers over a bulk
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    b = backend.asarray(rng.standard_normal(n))
    op = backend.asarray(A)
    plain = specop.solve(op, b, damping=mu, rtol=1e-8)
    eig = specop.eigsh(op, k=4, seed=0)
    for P in (specop.spectral_preconditioner(eig, mu), specop.nystrom_preconditioner(op, 8, damping=mu, seed=0)):
        Pd = backend.to_numpy(P.to_dense())
        assert np.linalg.eigvalsh((Pd + Pd.T) / 2).min() > 0
        pre = specop.solve(op, b, damping=mu, rtol=1e-8, preconditioner=P)
        assert pre.converged and pre.iterations < plain.iterations / 1.5, (pre.iterations, plain.iterations)
        x = backend.to_numpy(pre.x)
        np.testing.assert_allclose(x, np.linalg.solve(A + mu * np.eye(n), backend.to_numpy(b)), rtol=1e-5)
    with pytest.raises(ValueError, match="not positive semidefinite"):
        specop.nystrom_preconditioner(backend.asarray(-A), 4, damping=mu, seed=0)


def test_damped_solve_with_a_torch_hessian_equals_the_dense_solve():
    torch = pytest.importorskip("torch")
    import _torch_models as tm

    from specop.curvature.torch import HessianOperator

    model = tm.mlp((3, 4, 3), "tanh", seed=0)
    X, y = tm.classification(12, 3, 3, seed=1)
    loss_fn = torch.nn.CrossEntropyLoss()
    H = HessianOperator(model, loss_fn, (X, y))
    Hd = tm.dense_hessian(model, loss_fn, X, y, None).double().numpy()
    n = Hd.shape[0]
    mu = 1.0 - min(0.0, np.linalg.eigvalsh(Hd).min())  # A + mu I positive definite
    V = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = np.linalg.solve(Hd + mu * np.eye(n), V.numpy())
    for method in ("cg", "minres"):
        res = specop.solve(H, V, damping=mu, method=method, rtol=1e-12)
        assert res.converged
        np.testing.assert_allclose(res.x.numpy(), want, rtol=1e-8, atol=1e-10)
    inv = specop.InverseOperator(H, damping=mu, rtol=1e-12)
    np.testing.assert_allclose((inv @ V[:, 0]).numpy(), want[:, 0], rtol=1e-8, atol=1e-10)


def test_results_unpack_like_scipy(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, info = specop.cg(backend.asarray(np.eye(3) * 2.0), backend.asarray(np.ones(3)))
        _, info2 = specop.lsmr(backend.asarray(np.ones((4, 3))), backend.asarray(np.ones(4)))
    assert info == 0 and info2 == 0
    np.testing.assert_allclose(backend.to_numpy(x), 0.5)
