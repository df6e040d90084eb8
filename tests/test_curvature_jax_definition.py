"""The JAX operators are the curvature of L = sum_b S_b / sum_b Z_b, for any batching and precision.

References are written from the definition, independently of specop: the masked,
class-weighted per-token cross-entropy of a tiny causal token model on (B, T, V) logits,
``jax.hessian`` of it, ``J^T (d^2 L / dz^2) J`` and ``sum_n w_n g_n g_n^T / sum_n w_n``.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from specop.curvature.jax import CrossEntropyLoss, FisherOperator, GGNOperator, HessianOperator  # noqa: E402

jax.config.update("jax_enable_x64", True)

B, T, V, VOCAB, D = 6, 4, 5, 4, 3
IGNORE = -100


def lm(params, tokens):
    """A causal token model: embeddings, a running mean over positions, logits (B, T, V)."""
    h = jnp.tanh(params["E"][tokens])
    h = h + jnp.cumsum(h, axis=1) / jnp.arange(1, tokens.shape[1] + 1)[None, :, None]
    return h @ params["W"] + params["c"]


@pytest.fixture(scope="module")
def lm_problem():
    rng = np.random.default_rng(3)  # numpy draws: jax.random would compile threefry for every shape
    params = {"E": rng.standard_normal((VOCAB, D)), "W": rng.standard_normal((D, V)) / 2,
              "c": 0.1 * rng.standard_normal(V)}
    params = {k: jnp.asarray(v) for k, v in params.items()}
    labels = rng.integers(0, V, (B, T))
    labels[0, 3] = labels[4, 0] = IGNORE  # padding
    mask = np.ones((B, T))
    mask[2, 2:] = mask[5, 1] = 0.0
    tokens, labels, mask = (jnp.asarray(a) for a in (rng.integers(0, VOCAB, (B, T)), labels, mask))
    weight = jnp.asarray([1.0, 2.0, 0.5, 1.5, 3.0])
    batch = {"tokens": tokens, "labels": labels, "mask": mask}
    flat, unravel = ravel_pytree(params)

    keep = (labels != IGNORE) * mask
    lab = jnp.where(labels == IGNORE, 0, labels)
    w = keep * weight[lab]  # w_n: the weight of token n in the data-set mean

    def nll(f):  # unweighted per-token loss l_n, shape (B, T)
        logp = jax.nn.log_softmax(lm(unravel(f), tokens), axis=-1)
        return -jnp.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]

    def data_loss(f):
        return jnp.sum(w * nll(f)) / jnp.sum(w)

    def loss_of_logits(z):
        logp = jax.nn.log_softmax(z.reshape(B, T, V), axis=-1)
        return -jnp.sum(w * jnp.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]) / jnp.sum(w)

    @jax.jit
    def references(f):  # one compile for all of them
        J = jax.jacfwd(lambda g: lm(unravel(g), tokens))(f).reshape(B * T * V, -1)
        Hz = jax.hessian(loss_of_logits)(lm(unravel(f), tokens).ravel())
        g = jax.jacrev(nll)(f).reshape(B * T, -1)
        return {"hessian": jax.hessian(data_loss)(f), "ggn": J.T @ Hz @ J,
                "fisher-emp": (g.T * w.ravel()) @ g / jnp.sum(w), "loss": data_loss(f),
                "gradient": jax.grad(data_loss)(f)}

    refs = references(flat)
    return params, batch, weight, {k: np.asarray(v) for k, v in refs.items()}


FISHERS = {"fisher-mc": "mc", "fisher-emp": "empirical"}
_BUILT: dict = {}


def lm_operator(kind, lm_problem, layout="one", mc_samples=3):
    """The operator of ``kind`` on the data as one batch, or as a list of two batches of 3 (other weights)."""
    key = (kind, layout, mc_samples)
    if key not in _BUILT:
        params, batch, weight, _ = lm_problem
        data = batch
        if layout == "list":
            data = [jax.tree_util.tree_map(lambda a, s=s: a[s], batch) for s in (slice(0, 3), slice(3, 6))]
        loss = CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
        kw = {"inputs": "tokens", "targets": "labels", "mask": "mask"}
        if kind == "hessian":
            _BUILT[key] = HessianOperator(loss, params, data, model_fn=lm, **kw)
        elif kind == "ggn":
            _BUILT[key] = GGNOperator(lm, loss, params, data, **kw)
        else:
            _BUILT[key] = FisherOperator(lm, loss, params, data, kind=FISHERS[kind], mc_samples=mc_samples, seed=5,
                                         **kw)
    return _BUILT[key]


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher-emp"])
def test_per_token_masked_weighted_cross_entropy_equals_the_definition(lm_problem, kind):
    refs = lm_problem[3]
    op = lm_operator(kind, lm_problem)
    assert rel(op.to_dense(), refs[kind]) <= 1e-10
    if kind == "hessian":  # loss() and gradient() are the same code for every kind
        assert rel(op.gradient(), refs["gradient"]) <= 1e-10
        assert abs(float(op.loss()) - float(refs["loss"])) <= 1e-12 * abs(float(refs["loss"]))


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher-mc", "fisher-emp"])
def test_operators_do_not_depend_on_the_batching(lm_problem, kind):
    one, two = lm_operator(kind, lm_problem), lm_operator(kind, lm_problem, "list")  # 6 samples; 3 + 3
    ref = np.asarray(one.to_dense())
    assert np.abs(ref).max() > 0
    assert rel(two.to_dense(), ref) <= 1e-12
    if kind == "hessian":  # loss() and gradient() are the same code for every kind
        assert rel(two.gradient(), one.gradient()) <= 1e-12
        assert abs(float(two.loss()) - float(one.loss())) <= 1e-14


def test_mc_fisher_with_ignored_tokens_converges_to_the_ggn(lm_problem):
    ggn = lm_problem[3]["ggn"]
    few, many = (rel(lm_operator("fisher-mc", lm_problem, mc_samples=s).to_dense(), ggn) for s in (3, 1200))
    assert few > 5 * many, (few, many)  # ~ 1/sqrt(samples): 400x the samples, ~1/20 the error
    assert many < 0.05


def test_user_pair_losses_and_summed_losses_follow_the_definition(lm_problem):
    params, batch, weight, refs = lm_problem

    def pair(p, b):  # a user loss_fn(params, batch) returning (sum, normalizer), written by hand
        logp = jax.nn.log_softmax(lm(p, b["tokens"]), axis=-1)
        lab = jnp.where(b["labels"] == IGNORE, 0, b["labels"])
        w = (b["labels"] != IGNORE) * b["mask"] * weight[lab]
        return -jnp.sum(w * jnp.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]), jnp.sum(w)

    halves = [jax.tree_util.tree_map(lambda a, s=s: a[s], batch) for s in (slice(0, 3), slice(3, 6))]
    H = HessianOperator(pair, params, halves)
    assert rel(H.to_dense(), refs["hessian"]) <= 1e-10
    summed = HessianOperator(CrossEntropyLoss(weight=weight, ignore_index=IGNORE, reduction="sum"), params, batch,
                             model_fn=lm, inputs="tokens", targets="labels", mask="mask")
    assert summed.normalizer is None and H.normalizer > 0
    assert rel(summed.to_dense(), H.normalizer * refs["hessian"]) <= 1e-10  # L = sum_b S_b: no division


# ------------------------------------------------------------------- float32
@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher-mc", "fisher-emp"])
def test_float32_matmat_equals_its_matvecs_and_the_float64_truth(lm_problem, kind):
    params, batch, weight, refs = lm_problem
    truth = lm_operator(kind, lm_problem).to_dense() if kind == "fisher-mc" else refs[kind]  # the same draws
    loss = CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    kw = {"inputs": "tokens", "targets": "labels", "mask": "mask", "dtype": "float32"}
    if kind == "hessian":
        op = HessianOperator(loss, params, batch, model_fn=lm, **kw)
    elif kind == "ggn":
        op = GGNOperator(lm, loss, params, batch, **kw)
    else:
        op = FisherOperator(lm, loss, params, batch, kind=FISHERS[kind], mc_samples=3, seed=5, **kw)
    assert op.dtype == jnp.float32 and op.shape == (32, 32)
    eye = jnp.eye(32, dtype=jnp.float32)
    cols = np.stack([np.asarray(op.matvec(eye[:, j])) for j in range(32)], axis=1)
    assert rel(cols, truth) <= 1e-5  # float32 against the float64 truth
    for k in (1, 8, 16, 32):
        got = op.matmat(eye[:, :k])
        assert got.dtype == jnp.float32
        assert rel(got, cols[:, :k]) <= 1e-5, (kind, k, rel(got, cols[:, :k]))


def mlp(params, x):
    return jnp.tanh(x @ params["W0"] + params["b0"]) @ params["W1"] + params["b1"]


def test_float32_mc_fisher_matmat_with_32_columns_equals_its_matvecs():
    """64 samples, 10 classes, 2 draws: XLA on CPU miscompiled the old mul-reshape-sum contraction here (143 %)."""
    rng = np.random.default_rng(0)
    params = {"W0": rng.standard_normal((5, 4)) / np.sqrt(5), "b0": 0.1 * rng.standard_normal(4),
              "W1": rng.standard_normal((4, 10)) / 2, "b1": np.zeros(10)}
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    X, y = jnp.asarray(rng.standard_normal((64, 5)), jnp.float32), jnp.asarray(rng.integers(0, 10, 64))
    F = FisherOperator(mlp, "cross_entropy", params, (X, y), mc_samples=2, dtype="float32")
    V = jnp.asarray(rng.standard_normal((74, 32)), jnp.float32)
    cols = np.stack([np.asarray(F.matvec(V[:, j])) for j in range(32)], axis=1)
    assert rel(F.matmat(V), cols) <= 1e-5
