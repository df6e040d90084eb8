"""Train mode is one fixed matrix: every operator, gradient() and loss() see the same dropout masks.

The model is a small transformer with attention dropout (inside scaled-dot-product attention),
``nn.Dropout`` layers and a functional ``F.dropout``, on two padded batches. Finite differences
of ``gradient()`` and ``loss()`` must match the Hessian and the gradient (they can only if every
call draws the same masks), and the operators must agree with each other where the definition
makes them equal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator
from tests import _torch_zoo as zoo


class DropoutTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(5, 4)
        self.enc = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.3, batch_first=True)
        self.head = nn.Linear(4, 3)
        self.double()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        h = self.enc(self.emb(tokens), src_key_padding_mask=pad)
        h = F.dropout(h, 0.25, training=self.training)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1))


def _problem(n: int = 8):
    model = DropoutTransformer()
    ids, _ = zoo.tokens(n, 5, 5, seed=4)
    y = torch.randint(0, 3, (n,), generator=zoo.seeded(5))
    batches = [(ids[:5], y[:5]), (ids[5:], y[5:])]  # padded with token 0
    return model, batches, {"mode": "train"}


def _shift(model: nn.Module, v: torch.Tensor, scale: float) -> None:
    with torch.no_grad():
        for p, d in zip(model.parameters(), torch.split(v, [p.numel() for p in model.parameters()]), strict=True):
            p.add_(scale * d.view_as(p))


def _direction(P: int) -> torch.Tensor:
    return torch.randn(P, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_hessian_equals_finite_differences_of_gradient_in_train_mode():
    model, data, hooks = _problem()
    H = HessianOperator(model, nn.CrossEntropyLoss(), data, **hooks)
    v, eps = _direction(H.shape[0]), 1e-4
    Hv = H @ v
    _shift(model, v, eps)
    up = H.gradient()
    _shift(model, v, -2 * eps)
    down = H.gradient()
    _shift(model, v, eps)
    fd = (up - down) / (2 * eps)
    assert float((Hv - fd).norm() / fd.norm()) < 1e-6


def test_gradient_equals_finite_differences_of_loss_in_train_mode():
    model, data, hooks = _problem()
    G = GGNOperator(model, nn.CrossEntropyLoss(), data, **hooks)
    v, eps = _direction(G.shape[0]), 1e-4
    slope = float(G.gradient() @ v)
    _shift(model, v, eps)
    up = float(G.loss())
    _shift(model, v, -2 * eps)
    down = float(G.loss())
    _shift(model, v, eps)
    assert abs((up - down) / (2 * eps) - slope) < 1e-6 * abs(slope)


def test_ggn_equals_hessian_where_the_outputs_are_linear_in_the_parameters():
    # in the head's parameters the outputs are linear, so H = G exactly, for the same masks
    model, data, hooks = _problem()
    head = ["head.weight", "head.bias"]
    H = HessianOperator(model, nn.CrossEntropyLoss(), data, params=head, **hooks).to_dense()
    G = GGNOperator(model, nn.CrossEntropyLoss(), data, params=head, **hooks).to_dense()
    assert zoo.rel(G, H) < 1e-12
    assert zoo.rel(HessianOperator(model, nn.CrossEntropyLoss(), data, params=head, **{**hooks, "mode": "eval"})
                   .to_dense(), H) > 1e-3  # the masks matter


@pytest.mark.parametrize("seed", [0, 7])
def test_empirical_fisher_of_one_sample_is_the_gradient_outer_product(seed):
    # one sample, mean loss: F_emp = g g^T with g = gradient(), whatever the Fisher's own seed
    model, data, hooks = _problem()
    one = [(data[0][0][:1], data[0][1][:1])]
    Fe = FisherOperator(model, nn.CrossEntropyLoss(), one, kind="empirical", seed=seed, **hooks)
    g = HessianOperator(model, nn.CrossEntropyLoss(), one, **hooks).gradient()
    assert zoo.rel(Fe.to_dense(), torch.outer(g, g)) < 1e-12


def test_train_mode_operators_are_fixed_and_leave_the_rng_alone():
    model, data, hooks = _problem()
    rng = torch.get_rng_state()
    for op in (HessianOperator(model, nn.CrossEntropyLoss(), data, cache_graph=False, **hooks),
               GGNOperator(model, nn.CrossEntropyLoss(), data, **hooks),
               FisherOperator(model, nn.CrossEntropyLoss(), data, mc_samples=2, **hooks)):
        V = torch.randn(op.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        assert torch.equal(op @ V, op @ V)
        assert zoo.rel(op @ V[:, 1], (op @ V)[:, 1]) < 1e-12
    assert torch.equal(torch.get_rng_state(), rng)
