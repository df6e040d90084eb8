"""Hypothesis strategy for rectangular test matrices with a known SVD (svds, lsqr tests).

A drawn :class:`RectCase` is a host float64 ``(m, n)`` matrix ``U diag(s) V^T`` rounded to
the drawn dtype (so ``numpy.linalg.svd`` of the host matrix is the oracle of a float32
operator too), with ``U, V`` Haar-like orthogonal and the singular values ``s`` set by
``structure``: ``random`` (a Gaussian matrix itself), ``spread`` (log-uniform over two
decades), ``repeated`` (separated values with multiplicities 2..4), ``rank_deficient``
(rank 0..min(m, n) - 1), ``ill_conditioned`` (log-uniform over 8 decades, float64 only
meaningful), ``clustered`` (two tight clusters of relative width 1e-4). Shapes are tall,
wide or square; sizes come from the shared pool (JAX: ``JAX_SIZES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from strategies import DrawnCase, orthogonal
from test_operators_strategies import sizes

RECT_STRUCTURES = ("random", "spread", "repeated", "rank_deficient", "ill_conditioned", "clustered")


@dataclass(frozen=True)
class RectCase(DrawnCase):
    """A drawn rectangular matrix with a known SVD."""

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.A.shape[0]), int(self.A.shape[1]))

    @property
    def singular_values(self) -> np.ndarray:
        """Descending singular values of the (rounded) host matrix."""
        return np.linalg.svd(self.A, compute_uv=False)

    @property
    def norm(self) -> float:
        s = self.singular_values
        return max(float(s[0]) if s.size else 0.0, np.finfo(np.float64).tiny)



def singular_spectrum(rng: np.random.Generator, r: int, structure: str) -> np.ndarray:
    if structure == "spread":
        return 10.0 ** rng.uniform(-2, 0, r)
    if structure == "ill_conditioned":
        return 10.0 ** rng.uniform(-8, 0, r)
    if structure == "repeated":
        mults: list[int] = []
        while sum(mults) < r:
            mults.append(int(rng.integers(2, 5)))
        values = rng.choice(np.linspace(0.1, 1.0, 2 * len(mults) + 1), size=len(mults), replace=False)
        return np.repeat(values, mults)[:r]
    if structure == "rank_deficient":
        s = np.zeros(r)
        q = int(rng.integers(0, r))
        s[:q] = rng.uniform(0.1, 1.0, q)
        return s
    if structure == "clustered":
        centres = np.array([0.3, 1.0])
        return centres[rng.integers(0, 2, r)] * (1.0 + 1e-4 * rng.uniform(-1, 1, r))
    return rng.uniform(0.1, 1.0, r)


@st.composite
def rect_matrices(draw: Any, *, min_size: int = 1, max_size: int = 30, structures: tuple[str, ...] = RECT_STRUCTURES,
                  dtypes: tuple[str, ...] = ("float64", "float32")) -> RectCase:
    seed = draw(st.integers(0, 2**32 - 1))
    m = draw(sizes(min_size, max_size))
    n = draw(sizes(min_size, max_size))
    structure = draw(st.sampled_from(structures))
    dtype = draw(st.sampled_from(dtypes))
    scale = 10.0 ** draw(st.integers(-2, 2))
    rng = np.random.default_rng(seed)
    r = min(m, n)
    if structure == "random":
        A = rng.standard_normal((m, n)) / np.sqrt(max(m, n))
    else:
        s = singular_spectrum(rng, r, structure)
        U = orthogonal(rng, m)[:, :r]
        V = orthogonal(rng, n)[:, :r]
        A = (U * s) @ V.T
    A = (scale * A).astype(dtype).astype(np.float64)
    return RectCase(A, dtype, seed, structure)
