"""Using the JAX operators as JAX code: traced products, pytrees, trainable leaves, batches, streams, pickling.

Every property on one tiny problem (a 3-4-3 tanh MLP, P = 31), so that compiles are shared.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from specop.curvature.jax import FisherOperator, GGNOperator, HessianOperator  # noqa: E402

jax.config.update("jax_enable_x64", True)


def mlp(params, x):
    return jnp.tanh(x @ params["W0"] + params["b0"]) @ params["W1"] + params["b1"]


def ce(out, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))


def loss_fn(params, batch):
    return ce(mlp(params, batch[0]), batch[1])


def init(seed=0):
    rng = np.random.default_rng(seed)  # numpy draws: jax.random compiles threefry for every shape
    return {"W0": jnp.asarray(rng.standard_normal((3, 4)) / 2), "b0": jnp.asarray(0.1 * rng.standard_normal(4)),
            "W1": jnp.asarray(rng.standard_normal((4, 3)) / 2), "b1": jnp.asarray(0.1 * rng.standard_normal(3))}


@pytest.fixture(scope="module")
def problem():
    params = init()
    rng = np.random.default_rng(1)
    X, y = jnp.asarray(rng.standard_normal((10, 3))), jnp.asarray(rng.integers(0, 3, 10))
    H = HessianOperator(loss_fn, params, (X, y))
    return params, X, y, H, jnp.asarray(rng.standard_normal(31))


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_products_trace_under_jit_vmap_cg_and_loops(problem):
    _, X, y, H, v = problem
    Hv = H.matvec(v)
    assert rel(jax.jit(lambda u: H.matvec(u))(v), Hv) <= 1e-12
    V = jnp.stack([v, 2 * v], axis=1)
    assert rel(jax.vmap(H.matvec, in_axes=1, out_axes=1)(V), jnp.stack([Hv, 2 * Hv], axis=1)) <= 1e-12
    shift = float(np.abs(np.linalg.eigvalsh(np.asarray(H.to_dense()))).max()) + 1.0
    x, _ = jax.scipy.sparse.linalg.cg(lambda u: H.matvec(u) + shift * u, v, tol=1e-12, maxiter=200)
    assert rel(H.matvec(x) + shift * x, v) <= 1e-9

    def power(params_, u):  # matfree style: a pure function of the vector and the parameters in a jitted loop
        def step(_, w):
            w = H.pure_matvec(w, params_)
            return w / jnp.linalg.norm(w)
        return jax.lax.fori_loop(0, 3, step, u)

    other = init(seed=7)
    got = jax.jit(power)(other, v)
    H_other = HessianOperator(loss_fn, other, (X, y))
    want = v
    for _ in range(3):
        want = H_other.matvec(want)
        want = want / jnp.linalg.norm(want)
    assert rel(got, want) <= 1e-10
    flat_other = ravel_pytree(other)[0]
    assert rel(H.pure_matvec(v, flat_other), H_other.matvec(v)) <= 1e-12
    assert rel(H.pure_matvec(v), Hv) <= 1e-12


def test_pytree_products_ravel_and_unravel(problem):
    params, _, _, H, v = problem
    tree = H.unravel(v)
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(params)
    assert rel(H.ravel(tree), v) == 0
    out = H.matvec_tree(tree)
    assert rel(H.ravel(out), H.matvec(v)) <= 1e-14
    assert all(out[k].shape == params[k].shape for k in params)
    with pytest.raises(ValueError, match="structure of params"):
        H.matvec_tree({"W0": params["W0"]})


def test_non_float_and_non_trainable_leaves_are_never_coordinates():
    params = init()
    X, y = jnp.asarray(np.random.default_rng(2).standard_normal((8, 3))), jnp.arange(8) % 3
    full = {"net": params, "stats": {"scale": jnp.asarray(2.0)}, "step": jnp.asarray(3),
            "key": jax.random.key(0), "act": jnp.tanh, "none": None}
    seen = []

    def loss(p, b):
        seen.append((p["step"].dtype, p["act"] is jnp.tanh, p["none"] is None))
        return p["stats"]["scale"] * loss_fn(p["net"], b)

    H = HessianOperator(loss, full, (X, y), trainable={"net": True, "stats": False, "step": True, "key": True,
                                                     "act": True, "none": True})
    flat, unravel = ravel_pytree(params)
    dense = jax.jit(jax.hessian(lambda f: 2.0 * loss_fn(unravel(f), (X, y))))(flat)
    assert H.shape == (31, 31) and rel(H.to_dense(), dense) <= 1e-10
    assert all(p.startswith("['net']") for p in H.trainable_paths)
    assert {"['stats']['scale']", "['step']", "['key']", "['act']", "['none']"} <= set(H.fixed_paths)
    assert set(seen) == {(jnp.dtype("int32") if not jax.config.jax_enable_x64 else jnp.asarray(3).dtype, True, True)}
    default = HessianOperator(loss, full, (X, y))  # by default every float array is a coordinate (here: scale)
    assert default.shape == (32, 32)
    by_path = HessianOperator(loss, full, (X, y), trainable=lambda path, leaf: "stats" not in path)
    assert by_path.trainable_paths == H.trainable_paths
    with pytest.raises(ValueError, match="trainable"):  # Flax linen variables: batch_stats are the user's call
        HessianOperator(lambda p, b: loss_fn(p["params"], b), {"params": params, "batch_stats": {"m": jnp.ones(3)}},
                        (X, y))
    with pytest.raises(ValueError, match="no trainable"):
        HessianOperator(lambda p, b: jnp.sum(b[0]) * 0.0, {"n": jnp.asarray(1)}, (X, y))


def test_dict_batches_selectors_and_aux_losses_equal_the_tuple_form(problem):
    params, X, y, H, v = problem
    G = GGNOperator(mlp, "cross_entropy", params, (X, y))
    batch = {"x": X, "labels": y}
    G_dict = GGNOperator(mlp, "cross_entropy", params, batch, inputs="x", targets=lambda b: b["labels"])
    assert rel(G_dict.matvec(v), G.matvec(v)) <= 1e-12
    H_aux = HessianOperator(lambda p, b: (loss_fn(p, (b["x"], b["labels"])), {"acc": 0.0}), params, batch,
                            has_aux=True)
    assert rel(H_aux.matvec(v), H.matvec(v)) <= 1e-12
    G_aux = GGNOperator(mlp, lambda o, t: (ce(o, t), o), params, (X, y), has_aux=True)
    assert rel(G_aux.matvec(v), G.matvec(v)) <= 1e-12
    with pytest.raises(ValueError, match="inputs="):
        GGNOperator(mlp, "cross_entropy", params, batch)


class Loader:
    """A re-iterable of numpy batches that counts its passes (a DataLoader stand-in)."""

    def __init__(self, X, y, size, repeat=False):
        self.X, self.y, self.size, self.repeat, self.passes = np.asarray(X), np.asarray(y), size, repeat, 0

    def __iter__(self):
        self.passes += 1
        while True:
            for lo in range(0, len(self.X), self.size):
                yield self.X[lo: lo + self.size], self.y[lo: lo + self.size]
            if not self.repeat:
                return


def test_data_are_streamed_once_per_product(problem):
    params, X, y, H, v = problem
    loader = Loader(X, y, 4)  # 4 + 4 + 2
    S = HessianOperator(loss_fn, params, loader)
    assert loader.passes == 1  # the census at construction
    assert rel(S.matvec(v), H.matvec(v)) <= 1e-12 and loader.passes == 2
    S.matvec(v)
    assert loader.passes == 3
    endless = HessianOperator(loss_fn, params, Loader(X, y, 5, repeat=True), num_batches=2)
    assert rel(endless.matvec(v), H.matvec(v)) <= 1e-12
    with pytest.raises(TypeError, match="one-shot"):
        HessianOperator(loss_fn, params, iter([(X, y)]))


def test_products_make_no_implicit_transfers(problem):
    params, X, y, H, v = problem
    ops = [H, GGNOperator(mlp, "cross_entropy", params, [(X[:5], y[:5]), (X[5:], y[5:])]),
           FisherOperator(mlp, "cross_entropy", params, (X, y), mc_samples=2)]
    for op in ops:
        want = op.matvec(v), op.gradient(), op.loss()
        with jax.transfer_guard("disallow"):
            got = op.matvec(v), op.gradient(), op.loss()
        assert all(rel(a, b) == 0 for a, b in zip(got, want, strict=True))


def test_mixed_float_precision_between_params_and_data_warns(problem):
    params, X, y, _, _ = problem
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    with pytest.warns(UserWarning, match="float64"):
        HessianOperator(loss_fn, p32, (X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HessianOperator(loss_fn, p32, (X, y), dtype="float32")
        HessianOperator(loss_fn, p32, (X.astype(jnp.float32), y))


@pytest.mark.parametrize("kind", ["hessian", "fisher-mc"])
def test_operators_pickle(problem, kind):
    params, X, y, H, v = problem
    if kind == "fisher-mc":
        H = FisherOperator(mlp, "cross_entropy", params, [(X[:5], y[:5]), (X[5:], y[5:])], mc_samples=3, seed=4)
    again = pickle.loads(pickle.dumps(H))
    assert type(again) is type(H) and again.shape == H.shape and again.dtype == H.dtype
    assert rel(again.matvec(v), H.matvec(v)) == 0
