"""Cross-backend: the same MLP in torch and JAX gives the same curvature products (float64).

The JAX pytree ``{"W0", "b0", "W1", "b1"}`` holds ``W`` as (in, out) and ravels in
sorted-key order; torch's ``nn.Linear`` holds ``W^T`` and flattens module by module.
A fixed index permutation maps one flat order to the other, so the same vectors go
into both operators.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from specop.curvature import torch as tc
from specop.curvature.jax import FisherOperator, GGNOperator, HessianOperator

jax.config.update("jax_enable_x64", True)

WIDTHS = (5, 6, 4, 3)


def ce(out, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))


def mlp(params, x):
    n = len(WIDTHS) - 1
    for i in range(n):
        x = x @ params[f"W{i}"] + params[f"b{i}"]
        if i < n - 1:
            x = jnp.tanh(x)
    return x


@pytest.fixture(scope="module")
def twin():
    """``(jax params, X, y, torch net, torch data, perm)`` with ``torch_flat[perm] == jax_flat``."""
    rng = np.random.default_rng(0)
    params, layers, offsets, start = {}, [], {}, 0
    for i, (a, b) in enumerate(itertools.pairwise(WIDTHS)):
        W, bias = rng.standard_normal((a, b)) / np.sqrt(a), 0.1 * rng.standard_normal(b)
        params[f"W{i}"], params[f"b{i}"] = jnp.asarray(W), jnp.asarray(bias)
        lin = torch.nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W.T))
            lin.bias.copy_(torch.tensor(bias))
        layers += [lin, torch.nn.Tanh()]
        offsets[f"W{i}"] = np.arange(a * b).reshape(b, a).T + start  # torch stores W^T row-major
        offsets[f"b{i}"] = np.arange(b) + start + a * b
        start += a * b + b
    net = torch.nn.Sequential(*layers[:-1])
    perm = np.concatenate([offsets[k].ravel() for k in sorted(params)])  # ravel_pytree's order
    X = rng.standard_normal((23, WIDTHS[0]))
    y = rng.integers(0, WIDTHS[-1], 23)
    data = (torch.tensor(X), torch.tensor(y))
    return params, (jnp.asarray(X), jnp.asarray(y)), net, data, perm


@pytest.mark.parametrize("kind", ["hessian", "ggn", "empirical-fisher"])
def test_torch_and_jax_operators_agree_on_the_same_vectors(twin, kind):
    params, jdata, net, tdata, perm = twin
    loss = torch.nn.CrossEntropyLoss()
    if kind == "hessian":
        jop = HessianOperator(lambda p, b: ce(mlp(p, b[0]), b[1]), params, jdata, batch_size=10)
        top = tc.HessianOperator(net, loss, tdata)
    elif kind == "ggn":
        jop, top = GGNOperator(mlp, "cross_entropy", params, jdata), tc.GGNOperator(net, loss, tdata)
    else:
        jop = FisherOperator(mlp, ce, params, jdata, kind="empirical")
        top = tc.FisherOperator(net, loss, tdata, kind="empirical")
    P = jop.shape[0]
    assert top.shape == (P, P) and len(perm) == P and sorted(perm) == list(range(P))
    V = np.random.default_rng(1).standard_normal((P, 4))
    Vt = np.empty_like(V)
    Vt[perm] = V  # the same vectors in torch's flat order
    out_jax = np.asarray(jop.matmat(jnp.asarray(V)))
    out_torch = top.matmat(torch.tensor(Vt)).numpy()[perm]
    scale = np.abs(out_torch).max()
    assert scale > 0
    assert np.abs(out_jax - out_torch).max() <= 1e-10 * scale
    v_jax = np.asarray(jop.matvec(jnp.asarray(V[:, 0])))
    assert np.abs(v_jax - out_torch[:, 0]).max() <= 1e-10 * scale
    grads = np.asarray(jop.gradient()), top.gradient().numpy()[perm]
    assert np.abs(grads[0] - grads[1]).max() <= 1e-12 * np.abs(grads[1]).max()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_builtin_losses_equal_torch_losses_on_per_token_outputs(reduction):
    from specop.curvature.jax import CrossEntropyLoss, MSELoss

    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, 4, 5))  # (B, T, V), class axis last; torch wants it at 1
    labels = rng.integers(0, 5, (3, 4))
    labels[0, 1] = labels[2, 3] = -1  # ignored positions
    soft = rng.dirichlet(np.ones(5), (3, 4))
    weight = rng.uniform(0.5, 2.0, 5)
    zt = torch.tensor(z).permute(0, 2, 1)
    for kw in ({}, {"weight": weight}, {"label_smoothing": 0.2}, {"weight": weight, "label_smoothing": 0.1}):
        ours = CrossEntropyLoss(ignore_index=-1, reduction=reduction, **kw)
        tkw = {k: torch.tensor(v) if k == "weight" else v for k, v in kw.items()}
        for targets, ttargets in ((labels, torch.tensor(labels)), (soft, torch.tensor(soft).permute(0, 2, 1))):
            want = torch.nn.functional.cross_entropy(zt, ttargets, ignore_index=-1, reduction=reduction, **tkw)
            got = ours(jnp.asarray(z), jnp.asarray(targets))
            assert abs(float(got) - float(want)) <= 1e-12 * abs(float(want)), (kw, targets.dtype)
    t = rng.standard_normal((3, 4, 5))
    want = torch.nn.functional.mse_loss(torch.tensor(z), torch.tensor(t), reduction=reduction)
    assert abs(float(MSELoss(reduction)(jnp.asarray(z), jnp.asarray(t))) - float(want)) <= 1e-12 * float(want)
