"""The torch operators pickle and unpickle to an equal operator (its own copy of the model and data)."""

from __future__ import annotations

import functools
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator
from tests import _torch_models as tm

OPS = {
    "hessian": HessianOperator,
    "hessian-cached": functools.partial(HessianOperator, cache_graph=True),
    "ggn": GGNOperator,
    "fisher-mc": functools.partial(FisherOperator, kind="mc", mc_samples=2, seed=3),
    "fisher-emp": functools.partial(FisherOperator, kind="empirical"),
}


@pytest.mark.parametrize("data", ["tuple", "loader"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_pickle_round_trip_gives_an_equal_operator(name, data):
    model, (X, y) = tm.bn_model(), tm.classification(10, 3, 3)
    d = (X, y) if data == "tuple" else DataLoader(TensorDataset(X, y), batch_size=4)
    op = OPS[name](model, nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)), d)
    V = torch.randn(op.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = op @ V  # a cached graph, if any, is not pickled
    back = pickle.loads(pickle.dumps(op))
    assert getattr(back, "_graphs", {}) == {}  # the graph cache is dropped, rebuilt on use
    assert type(back) is type(op) and back.shape == op.shape and back.dtype == op.dtype
    assert back.param_names == op.param_names and back.backend == "torch"
    assert torch.equal(back @ V, before)
    assert torch.equal(back.gradient(), op.gradient()) and torch.equal(back.loss(), op.loss())
    with torch.no_grad():  # the copy has its own model
        next(back.model.parameters()).mul_(2)
    assert torch.equal(op @ V, before)
