"""Every error path of the foundation: right exception type, message naming what was wrong."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BACKEND_NAMES, Backend, _make

import specop
import specop.random
from specop import backends
from specop.operators import check_square


def op_of(backend: Backend, m: int, n: int, dtype: str = "float64") -> specop.DenseOperator:
    return specop.DenseOperator(backend.asarray(np.arange(m * n, dtype=float).reshape(m, n), dtype))


# -------------------------------------------------------------------- shapes
def test_shape_mismatch_names_both_shapes(backend):
    A = op_of(backend, 3, 4)
    cases = [
        (lambda: A @ backend.asarray(np.ones(5)), "(5,)"),
        (lambda: A.matvec(backend.asarray(np.ones(3))), "(3,)"),
        (lambda: A @ backend.asarray(np.ones((5, 2))), "(5, 2)"),
        (lambda: A.rmatvec(backend.asarray(np.ones(4))), "(4,)"),
        (lambda: A.rmatmat(backend.asarray(np.ones((4, 2)))), "(4, 2)"),
        (lambda: A.matvec(backend.asarray(np.ones((4, 1)))), "(4, 1)"),
    ]
    for call, got in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert "(3, 4)" in str(info.value) and got in str(info.value)
    for call, other in ((lambda B: A + B, (4, 3)), (lambda B: A - B, (4, 3)), (lambda B: A @ B, (3, 3))):
        with pytest.raises(ValueError) as info:
            call(op_of(backend, *other))
        assert "(3, 4)" in str(info.value) and str(other) in str(info.value)


def test_non_square_rejected_where_square_needed(backend):
    A = op_of(backend, 3, 4)
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        check_square(A, "eigsh")
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        A.shift(1.0)
    assert check_square(op_of(backend, 4, 4), "eigsh") == 4
    with pytest.raises(TypeError, match="LinearOperator"):
        check_square(backend.asarray(np.eye(3)), "eigsh")


def test_bad_shapes_and_ranks_rejected(backend):
    with pytest.raises(ValueError, match="2-D"):
        specop.DenseOperator(backend.asarray(np.ones(3)))
    with pytest.raises(ValueError, match="1-D"):
        specop.DiagonalOperator(backend.asarray(np.ones((3, 3))))
    for shape in ((0, 3), (3,), (2, 2, 2), (2.5, 2)):
        with pytest.raises(ValueError, match="shape"):
            specop.FunctionOperator(lambda v: v, shape, like=backend.xp)
    with pytest.raises(TypeError, match="ndim"):
        op_of(backend, 2, 2) @ backend.asarray(np.ones((2, 2, 2)))


# ----------------------------------------------------------- backends mixed
def test_two_backends_mixed_names_both(backend):
    A = op_of(backend, 3, 3)
    mine = backends.backend_name(backend.xp)
    others = [_make(name) for name in BACKEND_NAMES if name != mine]
    if not others:
        pytest.skip("only one backend installed")
    calls = (lambda x, X, B: A @ x, lambda x, X, B: A.matmat(X), lambda x, X, B: A.rmatvec(x),
             lambda x, X, B: A + B, lambda x, X, B: A @ B,
             lambda x, X, B: backends.namespace_of(backend.asarray(np.ones(3)), x))
    for other in others:
        args = other.asarray(np.ones(3)), other.asarray(np.ones((3, 1))), op_of(other, 3, 3)
        for call in calls:
            with pytest.raises(TypeError) as info:
                call(*args)
            assert mine in str(info.value) and other.name in str(info.value), str(info.value)


def test_two_devices_mixed_names_both():
    xp = pytest.importorskip("array_api_strict")
    dev0, dev1 = xp.Device("CPU_DEVICE"), xp.Device("device1")
    A = specop.DenseOperator(xp.eye(3, dtype=xp.float64, device=dev0))
    B = specop.DenseOperator(xp.eye(3, dtype=xp.float64, device=dev1))
    x1 = xp.ones(3, dtype=xp.float64, device=dev1)
    for call in (lambda: A @ x1, lambda: A.rmatvec(x1), lambda: A + B, lambda: A @ B, lambda: B - A):
        with pytest.raises(TypeError) as info:
            call()
        assert "CPU_DEVICE" in str(info.value) and "device1" in str(info.value), str(info.value)
    # same device is fine, and operators built like= B stay on device1
    assert backends.device_of(B @ x1) == dev1
    assert backends.device_of(specop.random.probes(3, 2, seed=0, like=B)) == dev1
    assert specop.IdentityOperator(3, like=B).device == dev1


# -------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", ["int64", "int32", "complex128", "bool"])
def test_unsupported_dtypes_rejected(backend, dtype):
    if not hasattr(backend.xp, dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    host = np.ones((3, 3), dtype=dtype)
    A = op_of(backend, 3, 3)
    calls = [
        lambda: specop.DenseOperator(backend.asarray(host, dtype)),
        lambda: specop.DiagonalOperator(backend.asarray(host[0], dtype)),
        lambda: A @ backend.asarray(host[0], dtype),
        lambda: A @ backend.asarray(host, dtype),
        lambda: specop.IdentityOperator(3, like=backend.xp, dtype=getattr(backend.xp, dtype)),
        lambda: specop.FunctionOperator(lambda v: v, (3, 3), dtype=dtype, like=backend.xp),
        lambda: specop.random.probes(3, 1, seed=0, like=backend.xp, dtype=dtype),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"float32.? or .?float64") as info:
            call()
        assert dtype in str(info.value) or "bool" in str(info.value), str(info.value)


# ------------------------------------------------------------- bad arguments
def test_bad_operands_and_scalars(backend):
    A = op_of(backend, 3, 3)
    with pytest.raises(TypeError, match="A @ B"):
        A * A
    with pytest.raises(TypeError, match="real scalar"):
        A * "2"
    with pytest.raises(TypeError, match="real scalar"):
        A * (1 + 2j)
    with pytest.raises(ValueError, match="finite"):
        A * float("nan")
    with pytest.raises(ValueError, match="finite"):
        A.shift(float("inf"))
    with pytest.raises(TypeError, match="A @ x"):
        A @ [1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match="adjoint"):
        specop.FunctionOperator(lambda v: v, (3, 3), like=backend.xp).rmatvec(backend.asarray(np.ones(3)))
    with pytest.raises(TypeError, match="callable"):
        specop.FunctionOperator("not a function", (3, 3), like=backend.xp)
    with pytest.raises(TypeError, match="matvec"):
        A.matvec([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="aslinearoperator"):
        specop.aslinearoperator("matrix")


@pytest.mark.parametrize("like", [3, object(), [1.0]])
def test_bad_like_rejected(like):
    with pytest.raises(TypeError, match="like"):
        specop.random.probes(3, 1, seed=0, like=like)
    with pytest.raises(TypeError, match="like"):
        specop.IdentityOperator(3, like=like)


def test_unknown_backend_name_rejected():
    with pytest.raises(ValueError, match="tensorflow"):
        specop.random.probes(3, 1, seed=0, like="tensorflow")


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, [1, 2]])
def test_bad_seed_rejected(seed):
    with pytest.raises(ValueError, match="seed"):
        specop.random.probes(3, 1, seed=seed)


@pytest.mark.parametrize("kind", ["normal", "Rademacher", "", None])
def test_bad_kind_rejected(kind):
    with pytest.raises(ValueError, match="kind"):
        specop.random.probes(3, 1, seed=0, kind=kind)


@pytest.mark.parametrize(("n", "count", "start", "name"), [
    (0, 1, 0, "n"), (-2, 1, 0, "n"), (2.0, 1, 0, "n"), (True, 1, 0, "n"),
    (3, -1, 0, "count"), (3, 1.5, 0, "count"), (3, 1, -1, "start"), (3, 1, "0", "start"),
])
def test_bad_sizes_rejected(n, count, start, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        specop.random.probes(n, count, seed=0, start=start)


# -------------------------------------------------------------- exceptions
def test_non_finite_error_is_exported_arithmetic_error():
    assert issubclass(specop.NonFiniteError, ArithmeticError)
    assert "NonFiniteError" in specop.__all__
    from specop._errors import NonFiniteError

    assert specop.NonFiniteError is NonFiniteError
    with pytest.raises(ArithmeticError):
        raise specop.NonFiniteError("lanczos step 3: matvec returned NaN")
