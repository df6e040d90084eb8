"""The generic algorithms (lanczos, eigsh, spectral_density) run unchanged on JAX curvature operators.

Oracle: the dense matrix of the same operator and ``numpy.linalg.eigvalsh``; the SLQ
nodes must equal those of the same run on the dense array (same seed, same probes).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import specop  # noqa: E402
from specop.curvature.jax import GGNOperator, HessianOperator  # noqa: E402

jax.config.update("jax_enable_x64", True)


def ce(out, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))


def mlp(params, x):
    return jnp.tanh(x @ params["W0"] + params["b0"]) @ params["W1"] + params["b1"]


@pytest.fixture(scope="module")
def operators():
    """Hessian and GGN of a 5-4-3 tanh MLP on 17 samples (P = 39), in 2 batches (9 + 8)."""
    rng = np.random.default_rng(0)  # numpy draws: jax.random compiles threefry for every shape
    params = {"W0": rng.standard_normal((5, 4)) / np.sqrt(5), "b0": 0.1 * rng.standard_normal(4),
              "W1": rng.standard_normal((4, 3)) / 2, "b1": np.zeros(3)}
    params = {k: jnp.asarray(v) for k, v in params.items()}
    X, y = jnp.asarray(rng.standard_normal((17, 5))), jnp.asarray(rng.integers(0, 3, 17))
    H = HessianOperator(lambda p, b: ce(mlp(p, b[0]), b[1]), params, (X, y), batch_size=9)
    G = GGNOperator(mlp, "cross_entropy", params, (X, y), batch_size=9)
    return H, G


def test_eigsh_matches_dense_eigenvalues(operators):
    H, G = operators
    for op, which in ((H, "BE"), (G, "LA")):
        w = np.linalg.eigvalsh(np.asarray(op.to_dense()))
        res = specop.eigsh(op, k=3, which=which, seed=0, tol=1e-10)
        want = np.concatenate([w[:1], w[-2:]]) if which == "BE" else w[-3:]
        assert np.abs(np.sort(res.eigenvalues) - np.sort(want)).max() <= 1e-8 * np.abs(w).max()
        resid = op.matmat(res.eigenvectors) - res.eigenvectors * jnp.asarray(res.eigenvalues)[None, :]
        assert float(jnp.abs(resid).max()) <= 1e-6 * np.abs(w).max()


def test_lanczos_ritz_values_are_dense_eigenvalues(operators):
    H, _ = operators
    w = np.linalg.eigvalsh(np.asarray(H.to_dense()))
    lz = specop.lanczos(H, steps=H.shape[0], reorth="full", seed=0)
    theta = lz.ritz()[0]  # CE's logit-shift invariance gives repeated zero eigenvalues: Krylov dim < n
    assert np.abs(theta[:, None] - w[None, :]).min(axis=1).max() <= 1e-10 * np.abs(w).max()
    assert np.abs(theta[[0, -1]] - w[[0, -1]]).max() <= 1e-10 * np.abs(w).max()


def test_spectral_density_equals_the_run_on_the_dense_matrix(operators):
    H, G = operators
    for op in (H, G):
        dense = op.to_dense()
        scale = float(jnp.abs(dense).max())
        sd = specop.spectral_density(op, method="slq", num_probes=2, steps=8, seed=3)
        ref = specop.spectral_density(dense, method="slq", num_probes=2, steps=8, seed=3)
        assert np.abs(sd.nodes - ref.nodes).max() <= 1e-10 * scale
        assert np.abs(sd.weights - ref.weights).max() <= 1e-10


def test_papyan_residual_through_operator_algebra(operators):
    H, G = operators
    R = H - G
    want = np.asarray(H.to_dense()) - np.asarray(G.to_dense())
    assert np.abs(np.asarray(R.to_dense()) - want).max() <= 1e-12 * np.abs(want).max()
