"""scipy's LinearOperator interface on specop operators (issue 16, item 4), on every backend.

The facts (matrices, expressions and expected numbers) are those of scipy's
``scipy/sparse/linalg/tests/test_interface.py`` (TestLinearOperator, TestAsLinearOperator,
test_dot, test_inheritance); the test code is ours, checked against scipy itself on numpy.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as spla

import specop
import specop.sparse.linalg as ssl

A_ = np.array([[1.0, 2, 3], [4, 5, 6]])
B_ = np.array([[1.0, 2], [3, 4], [5, 6]])
C_ = np.array([[1.0, 2], [3, 4]])


def _dense(backend, op):
    return backend.to_numpy(op.to_dense())


def _scipy_dense(op):
    return op.matmat(np.eye(op.shape[1]))


def test_power_matches_scipy(backend):
    C = specop.DenseOperator(backend.asarray(C_))
    ref = spla.aslinearoperator(C_)
    for p in (0, 1, 2, 3):
        np.testing.assert_allclose(_dense(backend, C ** p), _scipy_dense(ref ** p), rtol=1e-14)
    one = backend.asarray(np.ones(2))
    np.testing.assert_allclose(backend.to_numpy((C ** 2) @ one), [17, 37])
    np.testing.assert_allclose(backend.to_numpy((C ** 2).rmatvec(one)), [22, 32])
    np.testing.assert_allclose(backend.to_numpy((C ** 2).H.matvec(one)), [22, 32])
    np.testing.assert_allclose(backend.to_numpy((C ** 2).adjoint().matvec(one)), [22, 32])
    np.testing.assert_allclose(backend.to_numpy((C ** 2).matmat(backend.asarray(np.ones((2, 1))))), [[17], [37]])
    assert (C ** 2).args == (C, 2)


def test_power_refuses_what_scipy_refuses(backend):
    A = specop.DenseOperator(backend.asarray(A_))
    with pytest.raises(ValueError, match="square"):
        A ** 2
    with pytest.raises(ValueError):
        spla.aslinearoperator(A_) ** 2  # scipy raises the same type
    C = specop.DenseOperator(backend.asarray(C_))
    for p in (-1, 1.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            C ** p
    with pytest.raises(ValueError):
        A @ A


def test_power_symmetry_follows_the_base(backend):
    S = specop.DenseOperator(backend.asarray(C_ + C_.T))
    assert (S ** 3).is_symmetric and (S ** 3).symmetry_known
    C = specop.DenseOperator(backend.asarray(C_))
    assert not (C ** 2).is_symmetric and (C ** 0).is_symmetric


def test_dot_as_scipy(backend):
    A = specop.DenseOperator(backend.asarray(A_))
    B = specop.DenseOperator(backend.asarray(B_))
    ref = spla.aslinearoperator(A_)
    v, V = np.array([1.0, 2, 3]), np.array([[1.0], [2], [3]])
    np.testing.assert_allclose(backend.to_numpy(A.dot(backend.asarray(v))), ref.dot(v))
    np.testing.assert_allclose(backend.to_numpy(A.dot(backend.asarray(V))), ref.dot(V))
    np.testing.assert_allclose(backend.to_numpy(A.dot(backend.asarray(v))), [14, 32])
    np.testing.assert_allclose(_dense(backend, A.dot(B)), A_ @ B_)
    np.testing.assert_allclose(_dense(backend, A.dot(3)), 3 * A_)
    with pytest.raises(ValueError, match="1-d or 2-d"):
        A.dot(backend.asarray(np.ones((3, 1, 1))))


def test_args_as_scipy(backend):
    A = specop.DenseOperator(backend.asarray(A_))
    B = specop.DenseOperator(backend.asarray(B_))
    z = A + A
    assert len(z.args) == 2 and z.args[0] is A and z.args[1] is A
    z = 2 * A
    assert len(z.args) == 2 and z.args[0] is A and z.args[1] == 2
    assert ((A * 3) / 3).args[0] is A  # scalings fold, as scipy's simplification
    z = A @ B
    assert len(z.args) == 2 and z.args[0] is A and z.args[1] is B
    assert A.T.args == (A,)
    assert A.args == ()
    view = A.to_scipy()
    assert isinstance(view, spla.LinearOperator) and view.args == (A,)


def test_complex_scalars(backend):
    A = specop.DenseOperator(backend.asarray(A_))
    # a complex scalar with zero imaginary part is the real one (scipy would make a complex operator
    # with the same values)
    np.testing.assert_allclose(_dense(backend, (2 + 0j) * A), 2 * A_)
    np.testing.assert_allclose(_dense(backend, A / (2 + 0j)), A_ / 2)
    for expr in (lambda: 2j * A, lambda: A * 2j, lambda: A / 2j, lambda: A.dot(1j)):
        with pytest.raises(TypeError, match=r"float64.*complex"):
            expr()
    assert (2j * spla.aslinearoperator(A_)).dtype == np.complex128  # what scipy does instead


def test_algebra_matches_scipy(backend):
    """Every expression of scipy's TestLinearOperator.test_matvec, dense, against scipy's."""
    A = specop.DenseOperator(backend.asarray(A_))
    ref = spla.aslinearoperator(A_)
    X = np.array([[1.0, 2], [3, 4]])
    cases = [(2 * A, 2 * ref), (A * 2, ref * 2), (A + A, ref + ref), (-A, -ref), (A - A, ref - ref),
             (A / 2, ref / 2)]
    for ours, theirs in cases:
        np.testing.assert_allclose(_dense(backend, ours), _scipy_dense(theirs), rtol=1e-15)
        np.testing.assert_allclose(backend.to_numpy(ours.rmatmat(backend.asarray(X))), theirs.rmatmat(X), rtol=1e-15)


def test_custom_operator_as_scipy(backend):
    """``LinearOperator(shape, matvec, rmatvec, matmat, dtype, rmatmat)`` (scipy's constructor), any backend."""
    M = backend.asarray(A_)
    xp = backend.xp
    kw = dict(shape=(2, 3), matvec=lambda x: M @ x, rmatvec=lambda y: M.T @ y, like=M)
    op = ssl.LinearOperator(**kw)
    assert isinstance(op, ssl.LinearOperator) and isinstance(op, specop.LinearOperator)
    np.testing.assert_allclose(backend.to_numpy(op.matvec(backend.asarray([1.0, 2, 3]))), [14, 32])
    np.testing.assert_allclose(backend.to_numpy(op.rmatvec(backend.asarray([1.0, 1]))), [5, 7, 9])
    np.testing.assert_allclose(_dense(backend, op), A_)
    only_rmatmat = ssl.LinearOperator((2, 3), lambda x: M @ x, rmatmat=lambda Y: xp.matmul(M.T, Y), like=M)
    np.testing.assert_allclose(backend.to_numpy(only_rmatmat.rmatvec(backend.asarray([1.0, 1]))), [5, 7, 9])
    assert isinstance(ssl.aslinearoperator(M), ssl.LinearOperator)


def test_subclass_hooks_as_scipy(backend):
    """scipy's TestAsLinearOperator subclasses: ``_matvec`` with ``_rmatvec``, with ``_adjoint``, with ``_rmatmat``."""
    M = backend.asarray(A_)

    class HasRmatvec(ssl.LinearOperator):
        def __init__(self):
            super().__init__(M.dtype, (2, 3), like=M)

        def _matvec(self, x):
            return M @ x

        def _rmatvec(self, y):
            return M.T @ y

    class HasAdjoint(ssl.LinearOperator):
        def __init__(self):
            super().__init__(M.dtype, (2, 3), like=M)

        def _matvec(self, x):
            return M @ x

        def _adjoint(self):
            return ssl.LinearOperator((3, 2), lambda y: M.T @ y, like=M)

    y = backend.asarray([1.0, 2])
    for op in (HasRmatvec(), HasAdjoint()):
        assert isinstance(op, ssl.LinearOperator)
        np.testing.assert_allclose(backend.to_numpy(op.matvec(backend.asarray([1.0, 2, 3]))), [14, 32])
        np.testing.assert_allclose(backend.to_numpy(op.rmatvec(y)), A_.T @ [1, 2])
        np.testing.assert_allclose(backend.to_numpy(op.T.matvec(y)), A_.T @ [1, 2])
        np.testing.assert_allclose(backend.to_numpy(op.H.matvec(y)), A_.T @ [1, 2])
        np.testing.assert_allclose(backend.to_numpy(op.rmatmat(backend.asarray(np.eye(2)))), A_.T)

    class NoAdjoint(ssl.LinearOperator):
        def __init__(self):
            super().__init__(M.dtype, (2, 3), like=M)

        def _matvec(self, x):
            return M @ x

    with pytest.raises(TypeError, match="adjoint"):
        NoAdjoint().rmatvec(y)


def test_subclass_without_super_init_as_scipy():
    """scipy's BaseMatlike pattern: ``__init__`` sets ``dtype`` and ``shape`` only (numpy backend)."""

    class BaseMatlike(ssl.LinearOperator):
        def __init__(self, dtype):
            self.dtype = np.dtype(dtype)
            self.shape = A_.shape

        def _matvec(self, x):
            return A_.astype(self.dtype) @ x

        def _rmatvec(self, y):
            return A_.T.astype(self.dtype) @ y

    for dtype in (np.float32, np.float64):
        op = BaseMatlike(dtype)
        np.testing.assert_allclose(op.matvec(np.array([1.0, 2, 3], dtype=dtype)), [14, 32])
        np.testing.assert_allclose(op.rmatvec(np.array([1.0, 1], dtype=dtype)), [5, 7, 9])
        np.testing.assert_allclose(op.matmat(np.eye(3, dtype=dtype)), A_)
        np.testing.assert_allclose(ssl.lsqr(op, np.array([14.0, 32]).astype(dtype), atol=1e-10, btol=1e-10)[0]
                                   @ A_.T, [14, 32], rtol=1e-4)


def test_aslinearoperator_casts_integers_like_scipy():
    """scipy's TestAsLinearOperator int32 cases: products computed in float64."""
    orig = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    for M in (orig, scipy.sparse.csr_array(orig), spla.aslinearoperator(orig)):
        op = ssl.aslinearoperator(M)
        assert op.dtype == np.float64
        np.testing.assert_array_equal(op.matvec(np.array([1.0, 2, 3])), [14, 32])
        np.testing.assert_array_equal(op.rmatvec(np.array([1.0, 1])), [5, 7, 9])


def test_power_pickles(backend):
    C = specop.DenseOperator(backend.asarray(C_))
    back = pickle.loads(pickle.dumps(C ** 3))
    np.testing.assert_array_equal(_dense(backend, back), _dense(backend, C ** 3))
