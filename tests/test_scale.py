"""Scale invariance: every algorithm gives ``s`` times its unit-scale answer for ``||A|| = s``.

``s = 10**e`` over the whole float range that keeps the matrix entries normal numbers:
``|e| <= 300`` in float64, ``|e| <= 30`` in float32 (its range ends near 1e-38 and 3e38; the
drawn matrices' entries and products reach a few decades below ``||A||``). Nothing in an
algorithm may depend on the absolute size of the numbers: a norm ``sqrt(v . v)`` overflows
above 1e154 and underflows to zero below 1e-154 (then ``beta = 0`` ends a Krylov space as if
it were invariant); thresholds must be relative to ``||A||``.

Oracles are those of the unit-scale tests: the eigenvalues of the unit matrix (``numpy.linalg.eigh``),
dense polynomial moments for SLQ and Chebyshev moments for KPM, and the same estimator on the
unit matrix for the trace (identical probes).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from strategies import SymCase, run, symmetric_matrices, unit_norm
from test_density import _cheb_moments

import specop
import specop.random

#: decimal exponents of the scales per dtype
EXPONENTS = {"float64": 300, "float32": 30}
#: examples on JAX and array-api-strict (each one compiles or dispatches every small op anew)
FEW = 6


def _examples(backend, many: int) -> int:
    """``many`` examples on numpy and torch, :data:`FEW` on JAX and array-api-strict."""
    return FEW if backend.name in ("jax", "array_api_strict") else many


def _size(backend, high: int = 40) -> int:
    """Largest size drawn: JAX compiles each shape it meets, so it keeps to the small ones."""
    return min(high, 13) if backend.name == "jax" else high


@st.composite
def scaled(draw, **kw) -> tuple[SymCase, SymCase, float]:
    """``(unit, big, s)``: a unit-norm case and the same matrix times ``s = 10**e`` (rounded to its dtype)."""
    unit = unit_norm(draw(symmetric_matrices(scaled=False, **kw)))
    top = EXPONENTS[unit.dtype]
    # half the examples at the ends of the range, where squares underflow or overflow
    e = draw(st.sampled_from((-top, -top // 2 - 10, top // 2 + 10, top)) | st.integers(-top, top))
    s = 10.0 ** e
    A = (unit.A * s).astype(unit.dtype).astype(np.float64)
    return unit, SymCase(A, unit.dtype, unit.seed, unit.structure, unit.spectrum * s), s


def _op(backend, case: SymCase) -> specop.DenseOperator:
    return case.operator(backend)


def _tol(unit: SymCase, s: float) -> float:
    """Rounding bound of the tests in unit scale: the matvec's ``4 n eps |A|`` plus Lanczos' 1e-10,
    plus the product's underflow near the bottom of the range (XLA on CPU flushes subnormals to
    zero: each of the ``n`` terms of an entry of ``A v`` may lose up to ``tiny``, ``n^2 tiny / s``
    relative to ``s``; negligible above ``s = 1e-290`` in float64)."""
    return 1e-10 + 4 * unit.n * unit.eps + 4 * unit.n**2 * float(np.finfo(unit.dtype).tiny) / s


def test_lanczos_finds_the_spectrum_at_every_scale(backend):
    # full reorthogonalization and n steps: every Ritz value is an eigenvalue and every distinct
    # eigenvalue is found (as at unit scale, see test_lanczos); a norm that underflows ends the run
    # at step 1 with one Ritz value, one that overflows raises NonFiniteError
    def prop(c) -> None:
        unit, big, s = c
        res = specop.lanczos(_op(backend, big), steps=big.n, reorth="full", seed=unit.seed)
        theta = res.ritz()[0] / s
        dist = np.abs(theta[:, None] - unit.eigenvalues[None, :])
        # breakdown is declared at beta <= sqrt(eps) |T|: an eigenvalue cluster narrower than that
        # (float32: 3e-4) is one Ritz value, as at unit scale
        tol = _tol(unit, s) + (4 * np.sqrt(unit.eps) if unit.dtype == "float32" else 0.0)
        assert np.max(dist.min(axis=1)) <= tol, "a Ritz value is no eigenvalue"
        assert np.max(dist.min(axis=0)) <= tol, f"an eigenvalue was missed ({res.steps_done} steps)"

    run(backend, prop, scaled(max_size=_size(backend)), max_examples=_examples(backend, 100))


def test_eigsh_at_every_scale_equals_scale_times_unit(backend):
    def prop(c, which: str, k: int) -> None:
        unit, big, s = c
        k = min(k, unit.n - 1)
        tol = 1e-8 if unit.dtype == "float64" else 1e-5
        got = specop.eigsh(_op(backend, big), k=k, which=which, tol=tol, dense=False, seed=unit.seed)
        ref = specop.eigsh(_op(backend, unit), k=k, which=which, tol=tol, dense=False, seed=unit.seed)
        assert got.converged and ref.converged
        V = backend.to_numpy(got.eigenvectors).astype(np.float64)
        w = got.eigenvalues / s
        bound = np.maximum(tol * np.abs(w), 100 * unit.eps) + _tol(unit, s)
        resid = np.linalg.norm(unit.A @ V - V * w, axis=0)
        assert np.all(resid <= bound), f"true residuals {resid} > {bound} at scale {s:g}"
        assert np.all(got.residual_norms / s <= bound + bound.max())
        key = np.sort(np.abs(w)) if which == "LM" else w  # LM: a tie of -x and x may go either way
        want = np.sort(np.abs(ref.eigenvalues)) if which == "LM" else ref.eigenvalues
        np.testing.assert_allclose(key, want, rtol=0, atol=2 * np.sqrt(k) * bound.max())

    run(backend, prop, scaled(min_size=3, max_size=_size(backend, 30)), st.sampled_from(("LA", "SA", "LM", "BE")),
        st.sampled_from((1, 3)), max_examples=_examples(backend, 50))


def test_slq_quadrature_at_every_scale(backend):
    # m Gauss nodes are exact for polynomials of degree <= 2m - 1 (also without
    # reorthogonalization for the first few); scaled back, the moments are those of the unit matrix
    def prop(c, steps: int, reorth: str) -> None:
        unit, big, s = c
        m = min(steps, unit.n)
        dens = specop.spectral_density(_op(backend, big), num_probes=2, steps=m, seed=unit.seed, reorth=reorth,
                                       block=2)
        V = specop.random.probes(unit.n, 2, seed=unit.seed)
        deg = min(2 * m - 1, 3)
        got = np.einsum("ri,rip->rp", dens.weights, (dens.nodes / s)[:, :, None] ** np.arange(deg + 1))
        P = [V]
        for _ in range(deg):
            P.append(unit.A @ P[-1])
        want = np.stack([np.einsum("ir,ir->r", V, p) for p in P], axis=1) / np.einsum("ir,ir->r", V, V)[:, None]
        np.testing.assert_allclose(got, want, rtol=0, atol=_tol(unit, s))
        lo, hi = dens.support()
        w = unit.eigenvalues
        assert w[0] - _tol(unit, s) <= lo / s and hi / s <= w[-1] + _tol(unit, s)

    run(backend, prop, scaled(max_size=_size(backend)), st.integers(2, 12), st.sampled_from(("none", "full")),
        max_examples=_examples(backend, 100))


def test_kpm_at_every_scale(backend):
    # the estimated bounds contain the spectrum and the moments are the dense Chebyshev moments
    def prop(c, degree: int) -> None:
        unit, big, s = c
        dens = specop.spectral_density(_op(backend, big), method="kpm", num_probes=2, degree=degree, seed=unit.seed)
        lo, hi = dens.bounds[0] / s, dens.bounds[1] / s
        w = unit.eigenvalues
        assert lo <= w[0] and w[-1] <= hi
        V = specop.random.probes(unit.n, 2, seed=unit.seed)
        want = np.stack([_cheb_moments(unit.A, V[:, r], degree, (lo, hi)) for r in range(2)])
        atol = 1e-8 + 10 * (degree + 1) * _tol(unit, s) * max(abs(lo), abs(hi)) / (0.5 * (hi - lo))
        np.testing.assert_allclose(dens.probe_moments, want, rtol=0, atol=atol)

    run(backend, prop, scaled(dtypes=("float64",), max_size=_size(backend)), st.integers(1, 20),
        max_examples=_examples(backend, 100))


def test_trace_estimates_at_every_scale(backend):
    def prop(c, method: str) -> None:
        unit, big, s = c
        kw = {"method": method, "num_probes": 6, "steps": min(unit.n, 8), "seed": unit.seed}
        got = specop.trace(_op(backend, big), **kw)
        ref = specop.trace(_op(backend, unit), **kw)
        atol = 8 * unit.n * _tol(unit, s)
        assert abs(got.value / s - ref.value) <= atol, (got.value / s, ref.value)
        assert abs(got.std_error / s - ref.std_error) <= atol, (got.std_error / s, ref.std_error)

    run(backend, prop, scaled(max_size=_size(backend)), st.sampled_from(("hutchinson", "hutch++", "slq")),
        max_examples=_examples(backend, 100))


def test_point_spectrum_density_scales(backend):
    # c I: the default grid and smoothing width follow the scale (they were 1.0 and 0.01 absolute)
    for e in (-300, -150, 0, 150, 300):
        s = 10.0 ** e
        dens = specop.spectral_density(specop.DenseOperator(backend.asarray(2.5 * s * np.eye(5))), num_probes=2,
                                       steps=3, seed=0)
        np.testing.assert_allclose(dens.default_sigma() / s, 0.025, rtol=1e-12)
        grid = dens.default_grid(points=5) / s
        np.testing.assert_allclose(grid, np.linspace(0.0, 5.0, 5), rtol=1e-12, atol=1e-12)
        assert float(dens.cdf(2.5 * s * (1 - 1e-12))) == 0.0 and float(dens.cdf(2.5 * s * (1 + 1e-12))) == 1.0
