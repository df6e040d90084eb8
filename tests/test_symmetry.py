"""Symmetry: the symmetric algorithms refuse an operator that is not symmetric, by default.

``check_symmetric="auto"`` (the default of eigsh, lanczos, spectral_density and SLQ traces):
an operator with ``is_symmetric=False`` is refused; one whose symmetry is known (a dense or
sparse matrix checked exactly, a diagonal, sums/scalings/shifts and Gram products of known
ones, any subclass symmetric by construction) costs no product; a claim
(``FunctionOperator(symmetric=True)``, a scipy operator) is tested with two products. The
dense path of eigsh compares the whole matrix with its transpose for a claim (or with
``check_symmetric=True``). ``check_symmetric=False``
uses the operator as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as spla
from hypothesis import assume
from strategies import run
from test_operators_strategies import matrices

import specop

#: every symmetric algorithm, called on a square operator of size n (small work each)
CALLS = {
    "eigsh (Krylov)": lambda A, **kw: specop.eigsh(A, k=1, dense=False, ncv=min(A.shape[0], 4), seed=0, **kw),
    "eigsh (dense)": lambda A, **kw: specop.eigsh(A, k=1, dense=True, **kw),
    "lanczos": lambda A, **kw: specop.lanczos(A, steps=2, seed=0, **kw),
    "slq": lambda A, **kw: specop.spectral_density(A, num_probes=1, steps=2, seed=0, **kw),
    "kpm": lambda A, **kw: specop.spectral_density(A, method="kpm", num_probes=1, degree=4, seed=0, **kw),
    "trace slq": lambda A, **kw: specop.trace(A, method="slq", num_probes=1, steps=2, seed=0, **kw),
    "logdet": lambda A, **kw: specop.logdet(A, num_probes=1, steps=2, seed=0, **kw),
}


class Counting(specop.LinearOperator):
    """Wraps ``op`` and counts its products (columns); symmetric by construction iff ``known``."""

    def __init__(self, op: specop.LinearOperator, known: bool = True) -> None:
        self.op, self.products = op, 0
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=op.is_symmetric,
                         symmetry_known=known)

    def _matmat(self, V: Any) -> Any:
        self.products += V.shape[1]
        return self.op.matmat(V)

    def _matvec(self, v: Any) -> Any:  # the wrapped operator's own matvec: the same rounding
        self.products += 1
        return self.op.matvec(v)


def _claims(backend, M: np.ndarray) -> dict[str, Any]:
    """Operators that claim symmetry of ``M`` without anyone having checked it, by kind."""
    a = backend.asarray(M)
    ops = {"FunctionOperator": specop.FunctionOperator(lambda v: a @ v, M.shape, like=a, symmetric=True),
           "DenseOperator(symmetric=True)": specop.DenseOperator(a, symmetric=True)}
    if backend.name == "numpy":
        ops["ScipyOperator"] = specop.ScipyOperator(spla.aslinearoperator(M), symmetric=True)
        ops["scipy LinearOperator"] = spla.aslinearoperator(M)
    return ops


def _nonsymmetric(case) -> np.ndarray:
    M = case.A
    skew = np.max(np.abs(M - M.T))
    assume(skew > 1e-3 * np.max(np.abs(M)))  # clearly not symmetric (the test's resolution is ~1e-12)
    return M


def test_non_symmetric_operators_are_refused_by_default(backend):
    def prop(case) -> None:
        M = _nonsymmetric(case)
        ops = {"DenseOperator": specop.DenseOperator(backend.asarray(M)), **_claims(backend, M)}
        for kind, op in ops.items():
            for name, call in CALLS.items():
                with pytest.raises(ValueError, match=r"not .*symmetric.*check_symmetric=False") as err:
                    call(op)
                assert "symmetric" in str(err.value), (kind, name)

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, matrices(square=True, symmetric=False, min_size=2, max_size=12, dtypes=("float64",)),
        max_examples=8 if few else 25)


def test_a_claim_costs_two_products_and_known_symmetry_none(backend):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((9, 9))
    S = G + G.T
    a = backend.asarray(S)
    claim = Counting(specop.DenseOperator(a), known=False)
    known = Counting(specop.DenseOperator(a), known=True)
    for name, call in CALLS.items():
        if name == "logdet":
            continue  # S is indefinite
        plain = call(specop.DenseOperator(a))
        for op, extra in ((known, 0), (claim, 0 if name == "eigsh (dense)" else 2)):
            op.products = 0
            res = call(op)
            spent = res.matvecs
            assert spent == plain.matvecs + extra, (name, spent, plain.matvecs)
            assert op.products == spent, (name, op.products, spent)
        bad = Counting(specop.DenseOperator(backend.asarray(G), symmetric=True), known=False)
        with pytest.raises(ValueError, match="not symmetric"):
            call(bad)
        assert bad.products <= (9 if name == "eigsh (dense)" else 2), (name, bad.products)


def test_known_symmetric_compositions_need_no_products(backend):
    rng = np.random.default_rng(1)
    G = rng.standard_normal((8, 8))
    S, B = specop.DenseOperator(backend.asarray(G + G.T)), specop.DenseOperator(backend.asarray(G))
    D = specop.DiagonalOperator(backend.asarray(np.arange(1.0, 9.0)))
    for op in (S + D, 2.5 * S - D, S.shift(0.5), B.T @ B, B @ B.T, S @ S, S / 3.0):
        assert op.is_symmetric and op.symmetry_known, op
        want = specop.eigsh(specop.DenseOperator(backend.asarray(backend.to_numpy(op.to_dense()))), k=2,
                            dense=False, ncv=6, seed=0, check_symmetric=False)
        got = specop.eigsh(op, k=2, dense=False, ncv=6, seed=0)
        assert got.matvecs == want.matvecs
        np.testing.assert_allclose(got.eigenvalues, want.eigenvalues, rtol=1e-10)
    assert not (B @ S).is_symmetric and not (B + S).is_symmetric
    with pytest.raises(ValueError, match="not symmetric"):
        specop.eigsh(B @ S, k=2)
    assert (B + S).symmetry_known  # one non-symmetric term: the sum is not symmetric, by construction
    # two non-symmetric terms may sum to a symmetric operator: refused as undeclared, not as non-symmetric
    C = B + B.T
    assert not C.is_symmetric and not C.symmetry_known
    with pytest.raises(ValueError, match="not declared symmetric"):
        specop.eigsh(C, k=2)
    got = specop.eigsh(C, k=2, dense=False, ncv=6, seed=0, check_symmetric=False)
    np.testing.assert_allclose(got.eigenvalues, np.linalg.eigvalsh(G + G.T)[-2:], rtol=1e-10)


def test_symmetric_claims_pass_and_the_opt_out_runs(backend):
    # every algorithm goes through one policy (refusals: above); two of them suffice here
    def prop(case) -> None:
        S = case.A
        for op in _claims(backend, S).values():
            for name in ("eigsh (Krylov)", "slq"):
                assert CALLS[name](op).matvecs > 0  # passes the two-product test (float32 too)
        M = backend.asarray(S + np.triu(np.ones_like(S), 1))
        for name in ("lanczos", "eigsh (dense)"):
            CALLS[name](specop.DenseOperator(M), check_symmetric=False)  # used as is

    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, matrices(symmetric=True, min_size=2, max_size=12), max_examples=8 if few else 25)


def test_dense_path_checks_the_whole_matrix_and_no_longer_symmetrizes(backend):
    G = np.random.default_rng(2).standard_normal((6, 6))
    a = backend.asarray(G)
    op = specop.FunctionOperator(lambda v: a @ v, (6, 6), like=backend.xp, symmetric=True)
    with pytest.raises(ValueError, match=r"max \|A - A\^T\|"):
        specop.eigsh(op, k=2)  # n <= ncv: the dense path
    w, _ = specop.eigsh(op, k=6, dense=True, check_symmetric=False)  # the opt-out: its symmetric part
    np.testing.assert_allclose(w, np.linalg.eigvalsh((G + G.T) / 2), rtol=1e-12)
    with pytest.raises(ValueError, match="check_symmetric"):
        specop.eigsh(specop.SparseOperator(scipy.sparse.csr_array(np.triu(G))), k=2)


def test_stored_matrices_symmetric_to_rounding_pass_and_others_are_measured():
    G = np.random.default_rng(3).standard_normal((7, 7))
    A = (G + G.T) / 2
    A[0, 1] += 1e-15  # rounding-sized (M = Z Z^T + U D U^T formed in floating point): accepted, no products
    assert not specop.aslinearoperator(A).is_symmetric
    plain = specop.eigsh((A + A.T) / 2, k=2, dense=False, ncv=5, seed=0)
    res = specop.eigsh(A, k=2, dense=False, ncv=5, seed=0)
    assert res.converged and res.matvecs == plain.matvecs
    A[0, 1] += 1e-6  # not rounding: refused, with the numbers
    with pytest.raises(ValueError, match=r"max \|A - A\^T\| = [0-9.e-]+ max \|A\| > "):
        specop.eigsh(A, k=2, dense=False, ncv=5)
    with pytest.raises(ValueError, match=r"max \|A - A\^T\| = [0-9.e-]+ max \|A\| > "):
        specop.spectral_density(scipy.sparse.csr_array(A), num_probes=1, steps=3)


def test_hutchinson_needs_no_symmetry():
    G = np.random.default_rng(3).standard_normal((7, 7))
    est = specop.trace(G, num_probes=4, seed=0)  # a trace needs no symmetry
    assert est.matvecs == 4
    with pytest.raises(ValueError, match="not symmetric"):
        specop.trace(G, num_probes=4, seed=0, check_symmetric=True)
    with pytest.raises(ValueError, match="check_symmetric"):
        specop.eigsh(G + G.T, k=2, check_symmetric="yes")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_randomized_test_passes_rounded_symmetric_products(dtype):
    # a symmetric operator whose products round differently per column (float32 sums) must pass
    rng = np.random.default_rng(4)
    n = 300
    G = rng.standard_normal((n, n))
    S = ((G + G.T) / 2).astype(dtype)
    op = specop.FunctionOperator(lambda v: S @ v, (n, n), dtype=dtype, symmetric=True)
    res = specop.eigsh(op, k=2, seed=0)
    assert res.converged


def test_scipy_sparse_nonsymmetric_is_refused_and_symmetric_accepted():
    M = scipy.sparse.random(30, 30, density=0.2, random_state=0, format="csr")
    with pytest.raises(ValueError, match="not symmetric"):
        specop.eigsh(M, k=2)
    res = specop.eigsh(M + M.T, k=2)
    assert res.converged
