"""Hypothesis strategies and tolerance helpers shared by the operator tests.

A drawn :class:`Case` is a host float64 matrix already rounded to the drawn dtype,
so the float64 numpy product of the rounded data is an exact-enough oracle.
Tolerances follow the standard backward-error bound of a dot product,
``|fl(A x) - A x| <= gamma_n |A| |x|`` with ``gamma_n ~ n * eps``; the tests bound
``|A| |x|`` entrywise by ``||A||_F ||x||_2`` and use ``TOL_FACTOR * n * eps`` times that.
The tests at the bottom check that the strategies produce what they promise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

#: Safety factor over the ``n * eps`` rounding bound (products of up to three factors).
TOL_FACTOR = 4.0
DTYPES = ("float32", "float64")
#: JAX compiles every primitive anew for each (shape, dtype) it meets, about 40 ms each on a
#: 2-core CPU, so on JAX sizes come from a fixed pool spanning 1..40 (compiled programs are then
#: reused). JAX runs the profile's full count (divisor 1: 200 examples under "ci"); a divisor > 1
#: cuts JAX's share for quick local runs.
JAX_EXAMPLE_DIVISOR = 1
JAX_SIZES = (1, 2, 3, 5, 8, 13, 21, 34, 40)
_size_pool: list[tuple[int, ...] | None] = [None]
STRUCTURES = ("gaussian", "gaussian", "gaussian", "diagonal", "rank_one", "zero", "triangular",
              "integer", "wide_range")


@dataclass(frozen=True)
class Case:
    """A drawn host matrix (float64 values exactly representable in ``dtype``)."""

    A: np.ndarray
    dtype: str
    seed: int
    structure: str

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A generator for further draws (vectors) tied to this example."""
        return np.random.default_rng([self.seed, salt])

    def vectors(self, n: int, k: int | None = None, salt: int = 1) -> np.ndarray:
        """Gaussian vector ``(n,)`` (``k`` None) or block ``(n, k)``, rounded to ``dtype``."""
        shape = (n,) if k is None else (n, k)
        return rounded(self.rng(salt).standard_normal(shape), self.dtype)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and held as float64 (the oracle's input)."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def _fill(rng: np.random.Generator, m: int, n: int, structure: str) -> np.ndarray:
    if structure == "diagonal":
        A = np.zeros((m, n))
        k = min(m, n)
        A[np.arange(k), np.arange(k)] = rng.standard_normal(k)
        return A
    if structure == "rank_one":
        return np.outer(rng.standard_normal(m), rng.standard_normal(n))
    if structure == "zero":
        return np.zeros((m, n))
    if structure == "triangular":
        return np.triu(rng.standard_normal((m, n)))
    if structure == "integer":
        return rng.integers(-3, 4, size=(m, n)).astype(np.float64)
    if structure == "wide_range":  # row scales from 1e-3 to 1e3
        return rng.standard_normal((m, n)) * 10.0 ** rng.uniform(-3, 3, size=(m, 1))
    return rng.standard_normal((m, n))


def sizes(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers in ``[low, high]`` (on JAX, inside :func:`run`: those of ``JAX_SIZES``)."""
    pool = _size_pool[0]
    if pool is not None and any(low <= s <= high for s in pool):
        return st.sampled_from([s for s in pool if low <= s <= high])
    return st.integers(low, high)


@st.composite
def matrices(draw, *, shape: tuple[int | None, int | None] = (None, None), square: bool = False,
             symmetric: bool | None = None, min_size: int = 1, max_size: int = 40,
             dtypes: tuple[str, ...] = DTYPES, structures: tuple[str, ...] = STRUCTURES) -> Case:
    """Draw a :class:`Case`: seed, size(s), dtype and structure, then numpy builds the matrix.

    ``shape`` fixes either dimension; ``square`` or ``symmetric=True`` forces ``m == n``;
    ``symmetric`` None draws it.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    if symmetric is None:
        symmetric = draw(st.booleans())
    m = shape[0] if shape[0] is not None else draw(sizes(min_size, max_size))
    if square or symmetric:
        n = m
    else:
        n = shape[1] if shape[1] is not None else draw(sizes(min_size, max_size))
    dtype = draw(st.sampled_from(dtypes))
    structure = draw(st.sampled_from(structures))
    A = _fill(np.random.default_rng(seed), m, n, structure)
    if symmetric:
        A = (A + A.T) / 2
    return Case(rounded(A, dtype), dtype, seed, structure)


def eps(dtype: str) -> float:
    """Unit roundoff of ``dtype``."""
    return float(np.finfo(dtype).eps)


def assert_close(got: np.ndarray, want: np.ndarray, *, dtype: str, n: int, scale: float, what: str = "") -> None:
    """``max |got - want| <= TOL_FACTOR * n * eps(dtype) * scale`` (exact match when ``scale`` is 0)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    bound = TOL_FACTOR * max(n, 1) * eps(dtype) * scale
    assert err <= bound, f"{what}: max error {err:.3e} > bound {bound:.3e} (n={n}, {dtype}, scale={scale:.3e})"


def fro(a: np.ndarray) -> float:
    """Frobenius norm (2-norm for vectors)."""
    return float(np.linalg.norm(a))


def magnitudes(low: float, high: float, *, zero: bool = True) -> st.SearchStrategy[float]:
    """Reals with ``low <= |x| <= high`` (and 0 if ``zero``): no under/overflow in float32."""
    out = st.floats(low, high) | st.floats(-high, -low)
    return (st.just(0.0) | out) if zero else out


def run(backend: Any, prop: Callable[..., None], *strategies: st.SearchStrategy[Any]) -> None:
    """Run the property ``prop`` on hypothesis examples drawn from ``strategies``.

    The test body is written once and the ``backend`` fixture repeats it per backend;
    the number of examples is the active profile's (JAX: ``1 / JAX_EXAMPLE_DIVISOR`` of it,
    with sizes from ``JAX_SIZES``).
    """
    n = settings.default.max_examples
    jax = backend.name == "jax"
    if jax:
        n = max(5, n // JAX_EXAMPLE_DIVISOR)
    _size_pool[0] = JAX_SIZES if jax else None
    try:
        given(*strategies)(settings(settings.default, max_examples=n)(prop))()
    finally:
        _size_pool[0] = None


# ------------------------------------------------------- the strategies themselves
@given(matrices())
def test_matrices_respect_dtype_and_size(case: Case) -> None:
    m, n = case.A.shape
    assert 1 <= m <= 40 and 1 <= n <= 40
    assert np.array_equal(case.A, case.A.astype(case.dtype).astype(np.float64))


@given(matrices(symmetric=True))
def test_symmetric_matrices_are_symmetric(case: Case) -> None:
    assert np.array_equal(case.A, case.A.T)
