"""Every operator class pickles (to a multiprocessing worker, to disk) and comes back equal.

An operator holds its array namespace, a module, which does not pickle: it travels as the
backend's name and is looked up again on unpickling; devices travel as they are (torch,
array-api-strict) or as platform and id (JAX devices do not pickle). The round trip gives an
operator of the same class, shape, dtype, backend, device and symmetry whose products are
bit-identical. ``to_scipy()`` views pickle too, and refuse complex vectors instead of dropping
their imaginary part.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as spla

import specop
from specop import backends


def _double(v):  # a module-level function pickles (by reference)
    return 2.0 * v


def _operators(backend) -> dict[str, specop.LinearOperator]:
    rng = np.random.default_rng(0)
    G = rng.standard_normal((5, 5))
    S = G + G.T
    a = backend.asarray(S)
    D = specop.DenseOperator(a)
    N = specop.DenseOperator(backend.asarray(G))
    ops = {
        "DenseOperator": D,
        "DiagonalOperator": specop.DiagonalOperator(backend.asarray(np.arange(1.0, 6.0))),
        "IdentityOperator": specop.IdentityOperator(5, like=a),
        "FunctionOperator": specop.FunctionOperator(_double, (5, 5), like=a, symmetric=True),
        "SumOperator": D + specop.IdentityOperator(5, like=a),
        "ScaledOperator": 2.5 * D,
        "ProductOperator": N.T @ N,
        "TransposeOperator": N.T,
        "ShiftedOperator": D.shift(0.5),
        "float32 DenseOperator": specop.DenseOperator(backend.asarray(S, "float32")),
    }
    if backend.name == "numpy":
        ops["SparseOperator"] = specop.SparseOperator(scipy.sparse.csr_array(S))
        ops["ScipyOperator"] = specop.ScipyOperator(spla.aslinearoperator(S), symmetric=True)
    return ops


def test_every_operator_class_round_trips_through_pickle(backend):
    x = backend.asarray(np.linspace(-1.0, 1.0, 5))
    X = backend.asarray(np.arange(10.0).reshape(5, 2))
    for name, op in _operators(backend).items():
        back = pickle.loads(pickle.dumps(op))
        assert type(back) is type(op), name
        assert (back.shape, back.dtype, back.backend, back.is_symmetric, back.symmetry_known) == \
            (op.shape, op.dtype, op.backend, op.is_symmetric, op.symmetry_known), name
        assert back.xp is op.xp and backends.same_device(back.device, op.device), (name, back.device, op.device)
        for v in (x, X):
            v = backends.astype(v, op.dtype, op.xp)
            np.testing.assert_array_equal(backend.to_numpy(back @ v), backend.to_numpy(op @ v), err_msg=name)
        if op.shape[0] == op.shape[1]:
            np.testing.assert_array_equal(backend.to_numpy(back.rmatvec(backends.astype(x, op.dtype, op.xp))),
                                          backend.to_numpy(op.rmatvec(backends.astype(x, op.dtype, op.xp))))


def test_algorithms_run_on_unpickled_operators(backend):
    op = _operators(backend)["SumOperator"]
    back = pickle.loads(pickle.dumps(op))
    want = specop.eigsh(op, k=2, dense=False, ncv=4, seed=0)
    got = specop.eigsh(back, k=2, dense=False, ncv=4, seed=0)
    np.testing.assert_array_equal(got.eigenvalues, want.eigenvalues)
    assert got.matvecs == want.matvecs


def test_scipy_views_pickle_and_refuse_complex_vectors(backend):
    op = _operators(backend)["DenseOperator"]
    view = op.to_scipy()
    back = pickle.loads(pickle.dumps(view))
    x = np.linspace(0.0, 1.0, 5)
    np.testing.assert_array_equal(back @ x, view @ x)
    z = x + 1j * x[::-1]
    for call in (lambda: view @ z, lambda: view.matmat(np.stack([z, z], axis=1)), lambda: view.rmatvec(z),
                 lambda: view.rmatmat(np.stack([z, z], axis=1))):
        with pytest.raises(TypeError, match=r"to_scipy\(\) view: expected a real float64 vector, got .*complex128"):
            call()
