"""Curvature operators of torch models against dense oracles (float64, 1e-10 relative).

Oracles: ``torch.autograd.functional.hessian`` of the full-data mean loss and explicit
``J^T H_out J`` (see ``tests/_torch_models.py``); per-sample gradients for the Fisher.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the torch convention
from torch.utils.data import DataLoader, TensorDataset

from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator
from tests import _torch_models as tm

TOL = 1e-10
CE, MSE = nn.CrossEntropyLoss(), nn.MSELoss()


def _frozen_mlp() -> nn.Module:
    model = tm.mlp([3, 4, 4, 3], "tanh", seed=3)
    model[0].requires_grad_(False)
    return model


# (name, model factory, loss, data factory, params)
CASES = [
    ("mlp-tanh-ce", lambda: tm.mlp([3, 5, 3], "tanh"), CE, lambda: tm.classification(12, 3, 3), None),
    ("mlp-relu-ce", lambda: tm.mlp([3, 5, 4, 3], "relu"), CE, lambda: tm.classification(12, 3, 3), None),
    ("mlp-tanh-mse", lambda: tm.mlp([3, 4, 2], "tanh"), MSE, lambda: tm.regression(10, 3, 2), None),
    ("mlp-F.mse", lambda: tm.mlp([3, 4, 2], "sigmoid"), F.mse_loss, lambda: tm.regression(10, 3, 2), None),
    ("mlp-F.ce", lambda: tm.mlp([3, 4, 3], "softplus"), F.cross_entropy, lambda: tm.classification(9, 3, 3), None),
    ("mlp-autodiff-loss", lambda: tm.mlp([3, 4, 2], "tanh"), nn.SmoothL1Loss(), lambda: tm.regression(10, 3, 2),
     None),
    ("ce-weighted-autodiff", lambda: tm.mlp([3, 4, 3], "tanh"),
     nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)),
     lambda: tm.classification(10, 3, 3), None),
    ("cnn-ce", tm.cnn, CE, lambda: tm.classification(6, (1, 5, 5), 3), None),
    ("bn-eval-ce", tm.bn_model, CE, lambda: tm.classification(10, 3, 3), None),
    ("frozen-layer", _frozen_mlp, CE, lambda: tm.classification(10, 3, 3), None),
    ("subset-names", lambda: tm.mlp([3, 4, 4, 3], "tanh"), CE, lambda: tm.classification(10, 3, 3),
     ["2.weight", "4.bias"]),
    ("subset-bn-weight", tm.bn_model, CE, lambda: tm.classification(10, 3, 3), ["1.weight", "0.bias"]),
]
IDS = [c[0] for c in CASES]


def _params_arg(model: nn.Module, params: list[str] | None, as_tensors: bool):
    if params is None or not as_tensors:
        return params
    named = dict(model.named_parameters())
    return [named[n] for n in reversed(params)]  # order of the list must not matter


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian_matches_dense(case):
    _, make, loss_fn, data, params = case
    model, (X, y) = make(), data()
    H = HessianOperator(model, loss_fn, (X, y), params=_params_arg(model, params, True))
    model.eval()
    assert tm.rel_err(H.to_dense(), tm.dense_hessian(model, loss_fn, X, y, params)) < TOL


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ggn_matches_explicit_jt_h_j(case):
    _, make, loss_fn, data, params = case
    model, (X, y) = make(), data()
    G = GGNOperator(model, loss_fn, (X, y), params=params)
    model.eval()
    assert tm.rel_err(G.to_dense(), tm.dense_ggn(model, loss_fn, X, y, params)) < TOL


@pytest.mark.parametrize("case", [c for c in CASES if c[2] in (CE, MSE)], ids=lambda c: c[0])
def test_ggn_symmetric_psd(case):
    _, make, loss_fn, data, params = case
    G = GGNOperator(make(), loss_fn, data(), params=params).to_dense()
    norm = torch.linalg.matrix_norm(G, 2)
    assert tm.rel_err(G.T, G) < 1e-14
    assert torch.linalg.eigvalsh(G).min() >= -1e-10 * norm


@pytest.mark.parametrize("case", [c for c in CASES if c[2] in (CE, F.cross_entropy)], ids=lambda c: c[0])
def test_exact_fisher_equals_ggn_for_cross_entropy(case):
    _, make, loss_fn, data, params = case
    model, (X, y) = make(), data()
    G = GGNOperator(model, loss_fn, (X, y), params=params).to_dense()
    model.eval()
    assert tm.rel_err(tm.exact_fisher_ce(model, X, params), G) < TOL


@pytest.mark.parametrize("loss_fn, data", [(CE, lambda: tm.classification(12, 3, 3)),
                                           (MSE, lambda: tm.regression(12, 3, 3))], ids=["ce", "mse"])
def test_mc_fisher_converges_to_ggn(loss_fn, data):
    model, (X, y) = tm.mlp([3, 4, 3], "tanh"), data()
    G = GGNOperator(model, loss_fn, (X, y)).to_dense()
    def frob_err(S: int) -> float:
        F_mc = FisherOperator(model, loss_fn, (X, y), mc_samples=S, seed=5).to_dense()
        return float(torch.linalg.norm(F_mc - G) / torch.linalg.norm(G))

    errs = [frob_err(S) for S in (16, 256, 4096)]
    # Monte-Carlo error ~ 1/sqrt(S): each 16x more samples should cut it by ~4
    assert errs[1] < errs[0] / 1.5 and errs[2] < errs[1] / 2 and errs[2] < errs[0] / 6, errs
    assert errs[2] < 0.05, errs


def test_mc_fisher_is_seeded_and_independent_of_batching():
    model, (X, y) = tm.mlp([3, 4, 3], "tanh"), tm.classification(11, 3, 3)
    V = torch.randn(sum(p.numel() for p in model.parameters()), 3, dtype=torch.float64)
    one = FisherOperator(model, CE, (X, y), mc_samples=3, seed=7)
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    batched = FisherOperator(model, CE, loader, mc_samples=3, seed=7)
    assert tm.rel_err(batched @ V, one @ V) < 1e-12
    assert torch.equal(one @ V, one @ V)  # the same draws in every product
    other = FisherOperator(model, CE, (X, y), mc_samples=3, seed=8)
    assert tm.rel_err(other @ V, one @ V) > 1e-3


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5], CASES[7], CASES[8], CASES[10]],
                         ids=lambda c: c[0])
def test_empirical_fisher_is_mean_of_per_sample_outer_products(case):
    _, make, loss_fn, data, params = case
    model, (X, y) = make(), data()
    Fe = FisherOperator(model, loss_fn, (X, y), params=params, kind="empirical").to_dense()
    model.eval()
    g = tm.per_sample_grads(model, loss_fn, X, y, params)
    assert tm.rel_err(Fe, g.T @ g / X.shape[0]) < TOL


@pytest.mark.parametrize("make_op", [
    HessianOperator, GGNOperator,
    functools.partial(FisherOperator, kind="empirical"),
    functools.partial(FisherOperator, kind="mc", mc_samples=2, seed=3),
], ids=["hessian", "ggn", "fisher-emp", "fisher-mc"])
def test_dataloader_with_short_last_batch_equals_one_batch(make_op):
    model, (X, y) = tm.cnn(), tm.classification(11, (1, 5, 5), 3)
    one = make_op(model, CE, (X, y))
    loader = DataLoader(TensorDataset(X, y), batch_size=4)  # 4 + 4 + 3
    many = make_op(model, CE, loader)
    V = torch.randn(one.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert many.num_samples == 11
    assert tm.rel_err(many @ V, one @ V) < 1e-12
    assert tm.rel_err(many.gradient(), one.gradient()) < 1e-12
    assert abs(float(many.loss()) - float(one.loss())) < 1e-12 * abs(float(one.loss()))


def test_gradient_and_loss_match_autograd():
    model, (X, y) = tm.mlp([3, 5, 3], "tanh"), tm.classification(12, 3, 3)
    H = HessianOperator(model, CE, [(X[:5], y[:5]), (X[5:], y[5:])], params=["2.weight"])
    loss = CE(model(X), y)
    (g,) = torch.autograd.grad(loss, model[2].weight)
    assert tm.rel_err(H.gradient(), g.reshape(-1)) < 1e-12
    assert abs(float(H.loss()) - float(loss.detach())) < 1e-12


def test_residual_h_minus_g_through_operator_algebra():
    model, (X, y) = tm.mlp([3, 4, 3], "tanh"), tm.classification(10, 3, 3)
    H, G = HessianOperator(model, CE, (X, y)), GGNOperator(model, CE, (X, y))
    R = H - G
    assert R.is_symmetric
    dense = tm.dense_hessian(model, CE, X, y) - tm.dense_ggn(model, CE, X, y)
    assert tm.rel_err(R.to_dense(), dense) < TOL


def test_unvmappable_model_falls_back_to_a_loop():
    class Branchy(nn.Module):  # .item() in forward: torch.func.vmap cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.lin = tm.mlp([3, 4, 3], "tanh")

        def forward(self, x):
            return self.lin(x) * (2.0 if x.sum().item() > -1e9 else 1.0)

    model, (X, y) = Branchy(), tm.classification(8, 3, 3)
    H = HessianOperator(model, CE, (X, y))
    assert tm.rel_err(H.to_dense(), tm.dense_hessian(model, CE, X, y)) < TOL


ACTS = sorted(tm.ACTIVATIONS)


@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=3), act=st.sampled_from(ACTS),
       seed=st.integers(0, 2**16), mse=st.booleans())
def test_hessian_matches_dense_random_architectures(widths, act, seed, mse):
    model = tm.mlp([2, *widths, 2], act, seed=seed)
    X, y = tm.regression(6, 2, 2, seed=seed) if mse else tm.classification(6, 2, 2, seed=seed)
    loss_fn = MSE if mse else CE
    H = HessianOperator(model, loss_fn, [(X[:4], y[:4]), (X[4:], y[4:])])
    dense = tm.dense_hessian(model, loss_fn, X, y)
    if float(dense.abs().max()) == 0.0:  # e.g. dead ReLU network: compare exactly
        assert float(H.to_dense().abs().max()) == 0.0
    else:
        assert tm.rel_err(H.to_dense(), dense) < TOL
