"""Flax (linen, nnx), Equinox and optax: the operators equal dense references, in float64 and float32.

Each model is a 3-4-3 network with a normalisation layer where the framework has one
(its running statistics are fixed state, never coordinates). References: ``jax.hessian``
of the mean cross-entropy over the trainable leaves only, and ``J^T H_z J``.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from specop.curvature.jax import GGNOperator, HessianOperator  # noqa: E402

jax.config.update("jax_enable_x64", True)

N = 12


def ce(out, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))


def f64(tree):
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating) else a,
        tree)


def linen_model(X):
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.BatchNorm(use_running_average=True)(nn.Dense(4)(x))
            return nn.Dense(3)(jnp.tanh(h))

    net = Net()
    variables = f64(net.init(jax.random.PRNGKey(0), X))
    stats = jax.tree_util.tree_map(lambda a: a + 0.3, variables["batch_stats"])  # non-trivial running statistics
    variables = {"params": variables["params"], "batch_stats": stats}
    flat, unravel = ravel_pytree(variables["params"])
    ref = lambda f, x: net.apply({"params": unravel(f), "batch_stats": stats}, x)  # noqa: E731
    return variables, net.apply, {"trainable": {"params": True, "batch_stats": False}}, flat, ref


def nnx_model(X):
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            kw = {"param_dtype": jnp.float64, "rngs": rngs}
            self.l1, self.l2 = nnx.Linear(3, 4, **kw), nnx.Linear(4, 3, **kw)
            self.bn = nnx.BatchNorm(4, use_running_average=True, **kw)
            self.drop = nnx.Dropout(0.5, deterministic=True, rngs=rngs)  # an RNG key and an int counter in the state

        def __call__(self, x):
            return self.l2(self.drop(jnp.tanh(self.bn(self.l1(x)))))

    graphdef, state = nnx.split(Net(nnx.Rngs(0)))  # the whole state: Params, BatchStats, RngKey, RngCount
    model_fn = lambda s, x: nnx.merge(graphdef, s)(x)  # noqa: E731
    _, params, rest = nnx.split(nnx.merge(graphdef, state), nnx.Param, ...)
    flat, unravel = ravel_pytree(params)
    ref = lambda f, x: nnx.merge(graphdef, unravel(f), rest)(x)  # noqa: E731
    return state, model_fn, {}, flat, ref


def equinox_model(X):
    eqx = pytest.importorskip("equinox")
    mlp = f64(eqx.nn.MLP(3, 3, 4, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0)))  # a whole eqx.Module
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    ref = lambda f, x: jax.vmap(eqx.combine(unravel(f), static))(x)  # noqa: E731
    return mlp, lambda m, x: jax.vmap(m)(x), {}, flat, ref


MODELS = {"linen": linen_model, "nnx": nnx_model, "equinox": equinox_model}


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return jnp.asarray(rng.standard_normal((N, 3))), jnp.asarray(rng.integers(0, 3, N))


@pytest.mark.parametrize("framework", list(MODELS))
def test_framework_models_equal_dense_references_in_float64_and_float32(framework, data):
    X, y = data
    params, model_fn, kw, flat, ref = MODELS[framework](X)
    P = flat.size

    @jax.jit
    def references(f):
        out = ref(f, X)
        J = jax.jacfwd(lambda g: ref(g, X))(f).reshape(-1, P)
        Hz = jax.hessian(lambda o: ce(o.reshape(out.shape), y))(out.ravel())
        return jax.hessian(lambda g: ce(ref(g, X), y))(f), J.T @ Hz @ J

    dense_h, dense_g = (np.asarray(a) for a in references(flat))
    V = jnp.asarray(np.random.default_rng(2).standard_normal((P, 32)))
    H = lambda **k: HessianOperator("cross_entropy", params, (X, y), model_fn=model_fn, **kw, **k)  # noqa: E731
    G = lambda **k: GGNOperator(model_fn, "cross_entropy", params, (X, y), **kw, **k)  # noqa: E731
    for build, dense in ((H, dense_h), (G, dense_g)):
        op = build()
        assert op.shape == (P, P) and op.dtype == jnp.float64
        assert rel(op.to_dense(), dense) <= 1e-10
    G32, V32 = G(dtype="float32"), V.astype(jnp.float32)
    cols = np.stack([np.asarray(G32.matvec(V32[:, j])) for j in range(32)], axis=1)
    assert rel(cols, dense_g @ np.asarray(V)) <= 1e-5  # float32 against the float64 truth
    for k in (1, 8, 16, 32):
        assert rel(G32.matmat(V32[:, :k]), cols[:, :k]) <= 1e-5, (framework, k)


def test_optax_losses_give_the_same_operators(data):
    optax = pytest.importorskip("optax")
    X, y = data
    rng = np.random.default_rng(3)
    params = {"W": jnp.asarray(rng.standard_normal((3, 3))), "b": jnp.asarray(0.1 * rng.standard_normal(3))}

    def model(p, x):
        return jnp.tanh(x @ p["W"] + p["b"])

    G = GGNOperator(model, "cross_entropy", params, (X, y)).to_dense()
    mean = GGNOperator(model, lambda z, t: optax.softmax_cross_entropy_with_integer_labels(z, t).mean(), params,
                       (X, y)).to_dense()
    mask = (jnp.arange(N) % 4 != 0).astype(jnp.float64)
    masked = GGNOperator(model, lambda z, t: (jnp.sum(optax.softmax_cross_entropy_with_integer_labels(z, t[0]) * t[1]),
                                              jnp.sum(t[1])), params, (X, y, mask), targets=lambda b: (b[1], b[2]))
    builtin = GGNOperator(model, "cross_entropy", params, (X, y, mask), mask=2)
    assert rel(mean, G) <= 1e-12
    assert rel(masked.to_dense(), builtin.to_dense()) <= 1e-12
    assert rel(builtin.to_dense(), G) > 1e-3  # the mask matters
