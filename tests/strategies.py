"""Hypothesis strategies for symmetric test matrices with a known spectrum (shared by the algorithm tests).

A drawn :class:`SymCase` is a host float64 symmetric matrix whose entries are exactly
representable in the drawn dtype, so ``numpy.linalg.eigh`` of the host matrix is the
oracle of a float32 operator too. Matrices are built as ``Q diag(d) Q^T`` from a drawn
spectrum ``d`` (``structure`` picks it) and a Haar-like orthogonal ``Q``, except
"random" (a GOE matrix) and "diagonal" (``diag(d)`` itself); all come from a drawn seed.

Structures: ``random`` (GOE), ``indefinite`` (both signs, uniform), ``clustered``
(three tight clusters of relative width 1e-3), ``repeated`` (well separated values with
multiplicities 2..5), ``few_distinct`` (1..3 separated values, any multiplicities),
``rank_deficient`` (rank 0..n-1), ``diagonal`` (normal entries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_operators_strategies import JAX_SIZES, _size_pool, sizes  # one size pool for all strategies

import specop

STRUCTURES = ("random", "indefinite", "clustered", "repeated", "few_distinct", "rank_deficient", "diagonal")
#: Structures whose spectrum has n distinct, separated eigenvalues.
DISTINCT = ("random", "indefinite", "clustered", "diagonal")
DTYPES = ("float64", "float32")
# JAX compiles each primitive anew for every shape it meets (~50-150 ms on 2 cores), and the
# Lanczos basis is sliced to every length 1..n: on JAX sizes come from the fixed pool JAX_SIZES
# (shared with the operator strategies), so compiled programs are reused across examples.


@dataclass(frozen=True)
class DrawnCase:
    """A drawn host float64 matrix rounded to ``dtype``, with the seed of its draws and its structure."""

    A: np.ndarray
    dtype: str
    seed: int
    structure: str

    @property
    def eps(self) -> float:
        return float(np.finfo(self.dtype).eps)

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A generator for further draws (vectors) tied to this example."""
        return np.random.default_rng([self.seed, salt])

    def operator(self, backend: Any) -> specop.DenseOperator:
        """The matrix as a dense operator on ``backend`` in the case's dtype."""
        return specop.DenseOperator(backend.asarray(self.A, self.dtype))


@dataclass(frozen=True)
class SymCase(DrawnCase):
    """A drawn symmetric matrix and what is known about it."""

    #: the generating spectrum (exact values before forming ``Q diag(d) Q^T`` and rounding)
    spectrum: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    @property
    def eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues of the (rounded) host matrix, by ``numpy.linalg.eigh``."""
        return np.linalg.eigvalsh(self.A)

    @property
    def norm(self) -> float:
        """Spectral norm (at least the tiniest positive float, so bounds scale safely)."""
        w = self.eigenvalues
        return max(float(np.max(np.abs(w))), np.finfo(np.float64).tiny)

    @property
    def distinct(self) -> int:
        """Number of distinct values of the generating spectrum."""
        return int(np.unique(self.spectrum).size)



def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Haar-distributed orthogonal ``n x n`` matrix (QR of a Gaussian, signs fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def spectrum(rng: np.random.Generator, n: int, structure: str) -> np.ndarray:
    """Eigenvalues of a ``structure`` matrix of size ``n`` (unsorted, order irrelevant)."""
    if structure == "indefinite":
        d = rng.uniform(0.1, 1.0, n) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        return d
    if structure == "clustered":
        centres = np.array([-1.0, 0.5, 2.0])
        return centres[rng.integers(0, 3, n)] * (1.0 + 1e-3 * rng.uniform(-1, 1, n))
    if structure == "repeated":
        mults: list[int] = []
        while sum(mults) < n:
            mults.append(int(rng.integers(2, 6)))
        grid = np.linspace(-1.0, 1.0, 2 * len(mults) + 1)  # separated by >= 1/len(mults)
        values = rng.choice(grid, size=len(mults), replace=False)
        return np.repeat(values, mults)[:n]
    if structure == "few_distinct":
        m = int(rng.integers(1, min(3, n) + 1))
        values = rng.choice(np.array([-1.0, -0.5, 0.25, 1.0]), size=m, replace=False)
        return np.concatenate([values, rng.choice(values, size=n - m)])
    if structure == "rank_deficient":
        r = int(rng.integers(0, n))
        d = np.zeros(n)
        d[:r] = rng.standard_normal(r)
        return d
    return rng.standard_normal(n)


@st.composite
def symmetric_matrices(draw: Any, *, min_size: int = 1, max_size: int = 40,
                       structures: tuple[str, ...] = STRUCTURES, dtypes: tuple[str, ...] = DTYPES,
                       scaled: bool = True) -> SymCase:
    """Draw a :class:`SymCase`: seed, size, structure, dtype, and a scale ``10**e``, ``|e| <= 3``.

    ``scaled=False`` leaves the spectrum at unit scale (``||A|| ~ 1``).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(sizes(min_size, max_size))
    structure = draw(st.sampled_from(structures))
    dtype = draw(st.sampled_from(dtypes))
    scale = 10.0 ** draw(st.integers(-3, 3)) if scaled else 1.0
    rng = np.random.default_rng(seed)
    if structure == "random":
        G = rng.standard_normal((n, n))
        A = (G + G.T) / (2.0 * np.sqrt(max(n, 1)))
        d = np.linalg.eigvalsh(A)
    else:
        d = spectrum(rng, n, structure)
        if structure == "diagonal":
            A = np.diag(d)
        else:
            Q = orthogonal(rng, n)
            A = (Q * d) @ Q.T
            A = (A + A.T) / 2
    A = (scale * A).astype(dtype).astype(np.float64)
    return SymCase(A, dtype, seed, structure, scale * d)


def unit_norm(case: SymCase) -> SymCase:
    """``case`` scaled to spectral norm 1 (rounded to its dtype again); the zero matrix stays."""
    s = float(np.max(np.abs(case.eigenvalues))) if case.A.any() else 1.0
    A = (case.A / s).astype(case.dtype).astype(np.float64)
    return SymCase(A, case.dtype, case.seed, case.structure, case.spectrum / s)


def run(backend: Any, prop: Callable[..., None], *strategies: st.SearchStrategy[Any],
        max_examples: int | None = None) -> None:
    """Run ``prop`` on hypothesis examples of ``strategies`` (the ``backend`` fixture repeats it).

    The number of examples is the active profile's unless ``max_examples`` lowers it;
    on JAX sizes come from :data:`JAX_SIZES` (see there).
    """
    n = settings.default.max_examples if max_examples is None else min(max_examples,
                                                                       settings.default.max_examples)
    _size_pool[0] = JAX_SIZES if backend.name == "jax" else None
    try:
        given(*strategies)(settings(settings.default, max_examples=n)(prop))()
    finally:
        _size_pool[0] = None


def interrupted_then_resumed(A: Any, path: Any, after: int, **kw: Any) -> tuple[Any, Any]:
    """``spectral_density(A, **kw)`` interrupted once ``after`` probes are done, resumed from ``path``.

    Returns ``(resumed, fresh)``: the resumed result and that of an uninterrupted run without
    a checkpoint, for the caller to compare.
    """
    def stop(done: int, total: int) -> None:
        if done == after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        specop.spectral_density(A, checkpoint=path, progress=stop, **kw)
    return specop.spectral_density(A, checkpoint=path, **kw), specop.spectral_density(A, **kw)


class _NanAfter(specop.LinearOperator):
    """``A`` until product call ``calls`` (0-based), then NaN; symmetric by construction unless told.

    A symmetric one spends none of its calls on a symmetry test; a rectangular or non-symmetric one has
    ``A.T``'s exact adjoint product, never poisoned and not counted (a symmetric one's adjoint
    products are its products: counted and poisoned).
    """

    def __init__(self, op: specop.DenseOperator, calls: int, symmetric: bool) -> None:
        self.op, self.calls, self.count = op, calls, 0
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=symmetric)

    def _poison(self, Y: Any) -> Any:
        self.count += 1
        return Y * self.xp.nan if self.count > self.calls else Y

    def _matmat(self, V: Any) -> Any:
        return self._poison(self.op.matmat(V))

    def _rmatmat(self, V: Any) -> Any:
        return self._matmat(V) if self.is_symmetric else self.op.rmatmat(V)

    def _matvec(self, v: Any) -> Any:
        return self._matmat(v[:, None])[:, 0]


def nan_after(backend: Any, A: np.ndarray, calls: int, symmetric: bool = True) -> specop.LinearOperator:
    """An operator equal to ``A`` whose products return NaN after ``calls`` calls (see ``_NanAfter``)."""
    return _NanAfter(specop.DenseOperator(backend.asarray(A)), calls, symmetric)


# ------------------------------------------------------- the strategies themselves
@given(symmetric_matrices())
def test_symmetric_matrices_are_symmetric_and_representable(case: SymCase) -> None:
    assert case.A.shape == (case.n, case.n) and 1 <= case.n <= 40
    assert np.array_equal(case.A, case.A.T)
    assert np.array_equal(case.A, case.A.astype(case.dtype).astype(np.float64))


@given(symmetric_matrices(structures=("repeated", "rank_deficient", "diagonal", "indefinite"), dtypes=("float64",)))
def test_symmetric_matrices_have_their_spectrum(case: SymCase) -> None:
    np.testing.assert_allclose(case.eigenvalues, np.sort(case.spectrum), rtol=0, atol=1e-13 * case.norm * case.n)
    if case.structure == "repeated" and case.n > 1:
        assert case.distinct < case.n
