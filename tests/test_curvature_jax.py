"""JAX curvature operators against dense jax.hessian / explicit J^T H J / per-sample gradients."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from specop.curvature.jax import FisherOperator, GGNOperator, HessianOperator  # noqa: E402

jax.config.update("jax_enable_x64", True)


def mlp_params(rng, widths=(5, 4, 3)):
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        params[f"W{i}"] = jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a))
        params[f"b{i}"] = jnp.asarray(0.1 * rng.standard_normal(b))
    return params


def mlp(params, x):
    n = len(params) // 2
    for i in range(n):
        x = x @ params[f"W{i}"] + params[f"b{i}"]
        if i < n - 1:
            x = jnp.tanh(x)
    return x


def conv_params(rng):
    return {"K": jnp.asarray(0.3 * rng.standard_normal((2, 1, 3, 3))),
            "W": jnp.asarray(0.3 * rng.standard_normal((2 * 4 * 4, 3)))}


def conv(params, x):  # x: (B, 1, 6, 6)
    h = jax.lax.conv_general_dilated(x, params["K"], (1, 1), "VALID")
    return jnp.tanh(h).reshape(x.shape[0], -1) @ params["W"]


def ce(out, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))


def problem(model="mlp", n=13, seed=0):
    rng = np.random.default_rng(seed)  # numpy draws: jax.random compiles threefry for every shape
    if model == "mlp":
        params, fn, X = mlp_params(rng), mlp, jnp.asarray(rng.standard_normal((n, 5)))
    else:
        params, fn, X = conv_params(rng), conv, jnp.asarray(rng.standard_normal((n, 1, 6, 6)))
    return params, fn, X, jnp.asarray(rng.integers(0, 3, n))


def dense_ggn(params, fn, X, y):
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def ggn(f):
        J = jax.jacfwd(lambda g: fn(unravel(g), X))(f).reshape(-1, f.size)
        out = fn(unravel(f), X)
        HL = jax.hessian(lambda o: ce(o.reshape(out.shape), y))(out.ravel())
        return J.T @ HL @ J

    return np.asarray(ggn(flat))


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_hessian_matches_jax_hessian(model):
    params, fn, X, y = problem(model)
    flat, unravel = ravel_pytree(params)

    def loss(p, batch):
        return ce(fn(p, batch[0]), batch[1])

    dense = jax.jit(jax.hessian(lambda f: loss(unravel(f), (X, y))))(flat)
    H = HessianOperator(loss, params, (X, y))
    assert rel(H.to_dense(), dense) <= 1e-10
    # with model_fn, loss_fn is the loss on the outputs (a callable or a name)
    assert rel(HessianOperator(ce, params, (X, y), model_fn=fn).to_dense(), dense) <= 1e-10
    assert rel(HessianOperator("cross_entropy", params, (X, y), model_fn=fn).to_dense(), dense) <= 1e-10
    assert rel(H.gradient(), jax.grad(lambda f: loss(unravel(f), (X, y)))(flat)) <= 1e-10
    assert abs(float(H.loss()) - float(jax.jit(loss)(params, (X, y)))) <= 1e-12


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_ggn_matches_explicit_jt_h_j_and_is_psd(model):
    params, fn, X, y = problem(model)
    G = np.asarray(GGNOperator(fn, "cross_entropy", params, (X, y)).to_dense())
    ref = dense_ggn(params, fn, X, y)
    assert rel(G, ref) <= 1e-10
    assert np.abs(G - G.T).max() <= 1e-12 * np.abs(G).max()
    assert np.linalg.eigvalsh(G).min() >= -1e-10 * np.abs(G).max()
    G_callable = GGNOperator(fn, ce, params, (X, y)).to_dense()  # the autodiff path of a callable loss
    assert rel(G_callable, ref) <= 1e-10


def test_exact_fisher_equals_ggn_and_mc_fisher_converges():
    params, fn, X, y = problem()
    flat, unravel = ravel_pytree(params)
    G = dense_ggn(params, fn, X, y)
    # exact Fisher: expectation over labels drawn from the model, sum_c p_c g_c g_c^T per sample
    p = jax.nn.softmax(fn(params, X))
    grads = jax.jit(jax.vmap(lambda c: jax.vmap(lambda xi: jax.grad(
        lambda f: ce(fn(unravel(f), xi[None]), c[None]))(flat))(X)))(jnp.arange(3))  # (class, sample, P)
    exact = np.einsum("nc,cni,cnj->ij", np.asarray(p), np.asarray(grads), np.asarray(grads)) / X.shape[0]
    assert rel(exact, G) <= 1e-10
    errors = [rel(FisherOperator(fn, "cross_entropy", params, (X, y), mc_samples=s, seed=1).to_dense(), G)
              for s in (1, 30, 1000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05
    again = FisherOperator(fn, "cross_entropy", params, (X, y), mc_samples=30, seed=1).to_dense()
    assert rel(again, FisherOperator(fn, "cross_entropy", params, (X, y), mc_samples=30, seed=1).to_dense()) == 0


def test_mc_fisher_for_mse_converges_to_ggn():
    params, fn, X, _ = problem()
    t = jnp.sin(X[:, :3])

    def mse(o, y):
        return jnp.mean((o - y) ** 2)

    G = np.asarray(GGNOperator(fn, "mse", params, (X, t)).to_dense())
    assert rel(GGNOperator(fn, mse, params, (X, t)).to_dense(), G) <= 1e-12
    errors = [rel(FisherOperator(fn, "mse", params, (X, t), mc_samples=s, seed=0).to_dense(), G) for s in (1, 2000)]
    assert errors[1] < errors[0] and errors[1] < 0.1


def test_empirical_fisher_is_mean_of_gradient_outer_products():
    params, fn, X, y = problem()
    flat, unravel = ravel_pytree(params)
    g = jax.jit(jax.vmap(lambda xi, yi: jax.grad(lambda f: ce(fn(unravel(f), xi[None]), yi[None]))(flat)))(X, y)
    F = FisherOperator(fn, "cross_entropy", params, (X, y), kind="empirical")
    assert rel(F.to_dense(), g.T @ g / X.shape[0]) <= 1e-10


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher-emp", "fisher-mc"])
def test_batches_with_short_last_batch_equal_one_batch(kind):
    params, fn, X, y = problem(n=11)

    def build(data, **kw):
        if kind == "hessian":
            return HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, data, **kw)
        if kind == "ggn":
            return GGNOperator(fn, "cross_entropy", params, data, **kw)
        if kind == "fisher-mc":  # draws per (seed, sample), so the batching does not change the matrix
            return FisherOperator(fn, "cross_entropy", params, data, mc_samples=2, seed=3, **kw)
        return FisherOperator(fn, "cross_entropy", params, data, kind="empirical", **kw)

    one = build((X, y))
    split = build((X, y), batch_size=4)  # 4 + 4 + 3
    listed = build([(X[:5], y[:5]), (X[5:], y[5:])])
    assert [b[0].shape[0] for b in split.batches] == [4, 4, 3]
    assert rel(split.to_dense(), one.to_dense()) <= 1e-12
    assert rel(listed.to_dense(), one.to_dense()) <= 1e-12


def test_unravel_maps_flat_vectors_back_to_pytrees():
    params, fn, X, y = problem()
    H = HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, (X, y))
    flat, _ = ravel_pytree(params)
    tree = H.unravel(flat)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), tree, params))
    V = jnp.stack([flat, 2 * flat, -flat], axis=1)
    trees = H.unravel(V)
    assert len(trees) == 3 and set(trees[1]) == set(params)
    assert all(bool(jnp.all(trees[1][k] == 2 * params[k])) for k in params)
    stacked = H.unravel(V, stacked=True)
    assert all(stacked[k].shape == (*params[k].shape, 3) for k in params)
    assert all(bool(jnp.all(stacked[k][..., 2] == -params[k])) for k in params)
    with pytest.raises(ValueError, match="shape"):
        H.unravel(jnp.ones(3))
    with pytest.raises(ValueError, match="shape"):
        H.unravel(jnp.ones((flat.size + 1, 2)))


def test_bad_input_gives_clear_errors():
    params, fn, X, y = problem()
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(lambda p, b: fn(p, b[0]), params, (X, y))  # not reduced to a scalar
    H = HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, (X, y))
    with pytest.raises(ValueError, match="shape"):
        H.matvec(jnp.ones(H.shape[0] + 1))
    with pytest.raises(ValueError, match="leading sample axis"):
        HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, (X, jnp.asarray(1)))
    with pytest.raises(ValueError, match="disagree"):
        HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, (X, y[:-1]))
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(lambda p, b: ce(fn(p, b[0]), b[1]), params, [])
    with pytest.raises(ValueError, match="cross_entropy"):
        FisherOperator(fn, ce, params, (X, y), kind="mc")
    with pytest.raises(ValueError, match="kind"):
        FisherOperator(fn, "cross_entropy", params, (X, y), kind="exact")
    with pytest.raises(ValueError, match="axis 0"):  # outputs that lost the sample axis
        GGNOperator(lambda p, x: fn(p, x).sum(0), "mse", params, (X, y))
    with pytest.raises(ValueError, match="batch_size"):
        GGNOperator(fn, "cross_entropy", params, (X, y), batch_size=0)
    with pytest.raises(ValueError, match="distinct devices"):
        GGNOperator(fn, "cross_entropy", params, (X, y), devices=jax.devices() * 2)
    with pytest.raises(ValueError, match="loss_fn_on_outputs"):
        GGNOperator(fn, "hinge", params, (X, y))
    with pytest.raises(ValueError, match="outside"):  # labels neither a class nor ignore_index
        GGNOperator(fn, "cross_entropy", params, (X, y + 1))
    with pytest.raises(ValueError, match="mask"):  # a callable loss applies its own mask
        GGNOperator(fn, ce, params, (X, y, jnp.ones(13)), mask=2)
    with pytest.raises(TypeError, match="model_fn"):  # a loss on outputs without a model
        HessianOperator("cross_entropy", params, (X, y))


def test_float64_without_x64_is_refused_or_warned():
    code = textwrap.dedent("""
        import warnings
        import jax, jax.numpy as jnp, numpy as np
        from specop.curvature.jax import HessianOperator
        loss = lambda p, b: jnp.mean((b[0] @ p - b[1]) ** 2)
        X = jnp.ones((4, 2)); y = jnp.ones(4)
        try:
            HessianOperator(loss, jnp.ones(2), (X, y), dtype="float64")
        except ValueError as err:
            print("refused:", err)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            H = HessianOperator(loss, np.ones(2), (X, y))  # numpy float64 params: JAX would truncate them
            HessianOperator(loss, np.ones(2), (X, y), dtype="float32")  # asked for float32: no warning
        print("warned:", len(caught), caught[0].message if caught else None, H.dtype)
    """)
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "refused:" in out.stdout and "jax_enable_x64" in out.stdout, out.stdout + out.stderr
    assert "warned: 1 params/data: float64" in out.stdout and out.stdout.rstrip().endswith("float32"), out.stdout


def test_dtype_argument_casts_parameters_and_data():
    params, fn, X, y = problem()
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    seen = []

    def loss(p, b):
        seen.append((p["W0"].dtype, b[0].dtype))
        return ce(fn(p, b[0]), b[1])

    H = HessianOperator(loss, p32, (X.astype(jnp.float32), y), dtype="float64")
    assert H.dtype == jnp.float64 and H.matvec(jnp.ones(H.shape[0])).dtype == jnp.float64
    assert set(seen) == {(jnp.dtype("float64"), jnp.dtype("float64"))}
    H32 = HessianOperator(loss, params, (X, y), dtype="float32")
    assert H32.dtype == jnp.float32 and H32.matvec(jnp.ones(H.shape[0], dtype=jnp.float32)).dtype == jnp.float32
