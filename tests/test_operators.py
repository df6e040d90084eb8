"""Operator algebra, matmat, adjoints and dense export against float64 numpy oracles.

Every test body runs once per installed backend (the ``backend`` fixture) on
hypothesis-drawn matrices (sizes 1..40, float32 and float64, symmetric or not, with
special structures). Tolerances: see ``test_operators_strategies``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from test_operators_strategies import Case, assert_close, fro, magnitudes, matrices, run

import specop
from specop import backends

SCALARS = magnitudes(1e-3, 8.0, zero=False)


@st.composite
def pairs(draw, *, product: bool = False) -> tuple[Case, Case]:
    """Two matrices of one dtype: same shape (``A + B``) or chained shapes (``A @ B``)."""
    a = draw(matrices())
    if product:
        b = draw(matrices(shape=(a.A.shape[1], None), symmetric=False, dtypes=(a.dtype,)))
    else:
        b = draw(matrices(shape=a.A.shape, symmetric=False, dtypes=(a.dtype,)))
    return a, b


def dense(backend: Any, case: Case) -> specop.DenseOperator:
    return specop.DenseOperator(backend.asarray(case.A, case.dtype))


def check_products(backend: Any, op: specop.LinearOperator, M: np.ndarray, case: Case, *,
                   n: int, scale: float, what: str) -> None:
    """``op @ x`` and ``op @ X`` equal ``M @ x``, ``M @ X`` (backend, dtype and values).

    ``n`` is the length of the longest chain of sums; ``scale`` bounds ``|M| |x| / ||x||``.
    """
    for k in (None, 3):
        x = case.vectors(op.shape[1], k, salt=7)
        y = op @ backend.asarray(x, case.dtype)
        assert backends.backend_name(y) == op.backend == backends.backend_name(backend.xp)
        assert y.dtype == op.dtype
        assert_close(backend.to_numpy(y), M @ x, dtype=case.dtype, n=n, scale=scale * fro(x), what=what)


# ------------------------------------------------------------------- algebra
def test_sum_matches_dense(backend):
    def prop(ab):
        a, b = ab
        op = dense(backend, a) + dense(backend, b)
        check_products(backend, op, a.A + b.A, a, n=a.A.shape[1] + 1, scale=fro(a.A) + fro(b.A), what="(A+B)x")

    run(backend, prop, pairs())


def test_difference_matches_dense(backend):
    def prop(ab):
        a, b = ab
        op = dense(backend, a) - dense(backend, b)
        check_products(backend, op, a.A - b.A, a, n=a.A.shape[1] + 1, scale=fro(a.A) + fro(b.A), what="(A-B)x")

    run(backend, prop, pairs())


def test_scaled_matches_dense(backend):
    def prop(case, c, as_array):
        # the scalar may also be a 0-d array of the backend (on the right: strict arrays never defer)
        scalar = backend.asarray(np.float64(c), case.dtype) if as_array else c
        for op in (c * dense(backend, case), dense(backend, case) * scalar):
            scale = abs(c) * fro(case.A)
            check_products(backend, op, c * case.A, case, n=case.A.shape[1] + 1, scale=scale, what="(cA)x")

    run(backend, prop, matrices(), SCALARS, st.booleans())


def test_division_matches_dense(backend):
    def prop(case, c):
        op = dense(backend, case) / c
        check_products(backend, op, case.A / c, case, n=case.A.shape[1] + 2, scale=fro(case.A) / abs(c), what="(A/c)x")

    run(backend, prop, matrices(), SCALARS)


def test_negation_matches_dense(backend):
    def prop(case):
        check_products(backend, -dense(backend, case), -case.A, case, n=case.A.shape[1], scale=fro(case.A), what="-Ax")

    run(backend, prop, matrices())


def test_product_matches_dense(backend):
    def prop(ab):
        a, b = ab
        op = dense(backend, a) @ dense(backend, b)
        assert op.shape == (a.A.shape[0], b.A.shape[1])
        n = a.A.shape[1] + b.A.shape[1]
        check_products(backend, op, a.A @ b.A, a, n=n, scale=fro(a.A) * fro(b.A), what="(AB)x")

    run(backend, prop, pairs(product=True))


def test_transpose_matches_dense(backend):
    def prop(case):
        op = dense(backend, case).T
        assert op.shape == case.A.T.shape
        assert op.T.shape == case.A.shape
        check_products(backend, op, case.A.T, case, n=case.A.shape[0], scale=fro(case.A), what="A.T x")

    run(backend, prop, matrices())


def test_shift_matches_dense(backend):
    def prop(case, sigma):
        op = dense(backend, case).shift(sigma)
        n = case.A.shape[0]
        want = case.A - sigma * np.eye(n)
        check_products(backend, op, want, case, n=n + 1, scale=fro(case.A) + abs(sigma), what="shift(sigma)x")

    run(backend, prop, matrices(square=True), magnitudes(1e-3, 100.0))


def test_mixed_precision_promotes_to_float64(backend):
    def prop(case):
        a32 = dense(backend, case)
        a64 = specop.DenseOperator(backend.asarray(case.A, "float64"))
        for op in (a32 + a64, a64 - a32, a32 @ a64.T, a64.T @ a32):
            assert op.dtype == backend.xp.float64
        check_products(backend, a32 + a64, 2 * case.A, case, n=case.A.shape[1] + 1, scale=2 * fro(case.A), what="mixed")

    run(backend, prop, matrices(dtypes=("float32",)))


def test_symmetry_flags_propagate(backend):
    def prop(ab):
        a, b = ab
        A, B = dense(backend, a), dense(backend, b)
        sym_a = a.A.shape[0] == a.A.shape[1] and bool(np.array_equal(a.A, a.A.T))
        sym_b = b.A.shape[0] == b.A.shape[1] and bool(np.array_equal(b.A, b.A.T))
        assert A.is_symmetric == sym_a
        assert (A + B).is_symmetric == (sym_a and sym_b)
        assert (2.0 * A).is_symmetric == sym_a
        assert (A.T is A) == sym_a
        if sym_a:
            assert A.shift(1.5).is_symmetric

    run(backend, prop, pairs())


# ----------------------------------------------------- concrete operators
KINDS = ("dense", "diagonal", "identity", "function", "function_not_vmappable")


def build(kind: str, backend: Any, case: Case) -> tuple[specop.LinearOperator, np.ndarray]:
    """Operator of ``kind`` made from ``case`` on ``backend``, and its dense float64 matrix."""
    a = backend.asarray(case.A, case.dtype)
    if kind == "dense":
        return specop.DenseOperator(a), case.A
    if kind == "diagonal":
        d = np.diag(case.A).copy()
        return specop.DiagonalOperator(backend.asarray(d, case.dtype)), np.diag(d)
    if kind == "identity":
        n = case.A.shape[0]
        return specop.IdentityOperator(n, like=a), np.eye(n)
    if kind == "function":
        return specop.FunctionOperator(lambda v: a @ v, case.A.shape, like=a), case.A
    host = case.A.astype(case.dtype)

    def through_host(v: Any) -> Any:  # numpy round trip: neither torch.func nor jax can vmap it
        return backend.asarray(host @ backend.to_numpy(v), case.dtype)

    return specop.FunctionOperator(through_host, case.A.shape, like=a), case.A


@pytest.mark.parametrize("kind", KINDS)
def test_matmat_equals_stacked_matvecs(backend, kind):
    def prop(case, k):
        op, M = build(kind, backend, case)
        X = case.vectors(op.shape[1], k)
        Y = backend.to_numpy(op.matmat(backend.asarray(X, case.dtype)))
        n, scale = op.shape[1], fro(M) * fro(X)
        assert_close(Y, M @ X, dtype=case.dtype, n=n, scale=scale, what=f"{kind} matmat")
        cols = np.stack([backend.to_numpy(op.matvec(backend.asarray(X[:, j], case.dtype))) for j in range(k)], axis=1)
        assert_close(Y, cols, dtype=case.dtype, n=n, scale=2 * scale, what=f"{kind} matmat vs matvecs")

    run(backend, prop, matrices(square=True), st.integers(1, 5))


@pytest.mark.parametrize("kind", KINDS)
def test_matmat_of_zero_columns(backend, kind):
    def prop(case):
        op, _ = build(kind, backend, case)
        for product in (op.matmat, op.rmatmat):
            Y = product(backend.asarray(np.zeros((op.shape[0], 0)), case.dtype))
            assert tuple(Y.shape) == (op.shape[0], 0) and Y.dtype == op.dtype

    run(backend, prop, matrices(square=True))


@pytest.mark.parametrize("kind", KINDS)
def test_to_dense_equals_matrix(backend, kind):
    def prop(case):
        op, M = build(kind, backend, case)
        D = op.to_dense()
        assert backends.backend_name(D) == op.backend
        assert D.dtype == op.dtype
        # a product with an identity column is exact in IEEE arithmetic
        np.testing.assert_array_equal(backend.to_numpy(D), M)

    run(backend, prop, matrices(square=True))


def test_rmatvec_rmatmat_match_transpose(backend):
    def prop(case):
        a = backend.asarray(case.A, case.dtype)
        at = backend.asarray(case.A.T, case.dtype)
        ops = {
            "dense": specop.DenseOperator(a),
            "function": specop.FunctionOperator(lambda v: a @ v, case.A.shape, like=a, rmatvec=lambda v: at @ v),
            "transpose": specop.DenseOperator(at).T,
        }
        m = case.A.shape[0]
        for name, op in ops.items():
            y, Y = case.vectors(m), case.vectors(m, 4, salt=2)
            got = backend.to_numpy(op.rmatvec(backend.asarray(y, case.dtype)))
            assert_close(got, case.A.T @ y, dtype=case.dtype, n=m, scale=fro(case.A) * fro(y), what=f"{name} rmatvec")
            got = backend.to_numpy(op.rmatmat(backend.asarray(Y, case.dtype)))
            assert_close(got, case.A.T @ Y, dtype=case.dtype, n=m, scale=fro(case.A) * fro(Y), what=f"{name} rmatmat")

    run(backend, prop, matrices())


def test_symmetric_function_reuses_matvec_as_adjoint(backend):
    def prop(case):
        a = backend.asarray(case.A, case.dtype)
        op = specop.FunctionOperator(lambda v: a @ v, case.A.shape, like=a, symmetric=True)
        y = case.vectors(case.A.shape[0])
        got = backend.to_numpy(op.rmatvec(backend.asarray(y, case.dtype)))
        n = case.A.shape[0]
        assert_close(got, case.A @ y, dtype=case.dtype, n=n, scale=fro(case.A) * fro(y), what="symmetric rmatvec")

    run(backend, prop, matrices(symmetric=True))


def test_array_matmul_operator_uses_rmatmul(backend):
    def prop(case):
        op = dense(backend, case)
        m = case.A.shape[0]
        y, Y = case.vectors(m), case.vectors(m, 3, salt=2).T
        for left, want in ((y, y @ case.A), (Y, Y @ case.A)):
            x = backend.asarray(left, case.dtype)
            if backend.name == "array_api_strict":
                # strict arrays raise instead of returning NotImplemented for foreign operands
                with pytest.raises(TypeError):
                    x @ op
                got = op.__rmatmul__(x)
            else:
                got = x @ op
            assert backends.backend_name(got) == op.backend
            scale = fro(case.A) * fro(left)
            assert_close(backend.to_numpy(got), want, dtype=case.dtype, n=m, scale=scale, what="x @ A")

    run(backend, prop, matrices())


def test_like_name_or_namespace_accepts_default_device_arrays(backend):
    xp = backend.xp
    x = xp.asarray([0.0, 1.0, 2.0], dtype=xp.float64)  # on the backend's default device
    for like in (backends.backend_name(xp), xp):
        ident = specop.IdentityOperator(3, like=like)
        twice = specop.FunctionOperator(lambda v: 2.0 * v, (3, 3), like=like, symmetric=True)
        np.testing.assert_array_equal(backend.to_numpy(ident @ x), [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(backend.to_numpy(twice.rmatvec(x)), [0.0, 2.0, 4.0])
        assert backends.same_device(backends.device_of(specop.random.probes(3, 1, seed=0, like=like)), ident.device)
