"""Batches of any structure: moving them to the operator, the hooks that describe them, and errors."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from specop.curvature.torch import GGNOperator, HessianOperator
from specop.curvature.torch._batches import to_operator
from tests import _torch_models as tm
from tests import _torch_zoo as zoo

Pair = collections.namedtuple("Pair", ["x", "n"])


@dataclasses.dataclass
class Item:
    x: torch.Tensor
    tag: str


def test_moving_a_batch_walks_the_tree_casts_floats_and_keeps_integers():
    x = torch.randn(3, 2, dtype=torch.float64)
    ids, mask = torch.arange(3), torch.tensor([True, False, True])
    enc = zoo.Encoding(features=x, ids=ids)
    batch = {"a": (x, [ids, mask]), "b": Pair(x, 5), "c": Item(x, "keep"), "d": enc, "e": "text"}
    out = to_operator(batch, torch.device("cpu"), torch.float32)
    assert out["a"][0].dtype == torch.float32 and out["a"][1][0].dtype == torch.int64
    assert out["a"][1][1].dtype == torch.bool and isinstance(out["a"][1], list)
    assert isinstance(out["b"], Pair) and out["b"].x.dtype == torch.float32 and out["b"].n == 5
    assert isinstance(out["c"], Item) and out["c"].x.dtype == torch.float32 and out["c"].tag == "keep"
    assert type(out["d"]) is zoo.Encoding and out["d"].features.dtype == torch.float32 and out["d"].ids is ids
    assert out["e"] == "text" and batch["a"][0].dtype == torch.float64  # the input is not changed


def _mlp_dict_problem():
    model = tm.mlp([3, 4, 3])
    X, y = tm.classification(8, 3, 3)
    return model, {"x": X, "y": y}


@pytest.mark.parametrize("kwargs, exc, match", [
    ({}, ValueError, r"data batch 0: expected an \(X, y\) pair, got a dict; .*forward="),
    ({"forward": lambda m, b: m(b["x"])}, ValueError, r"targets=lambda batch"),
    ({"forward": lambda m, b: (m(b["x"]), 1), "targets": lambda b: b["y"]}, ValueError, r"got tuple; pass output="),
    ({"forward": lambda m, b: {"z": m(b["x"])}, "targets": lambda b: b["y"], "output": "logits"}, ValueError,
     r"output='logits': cannot select it"),
    ({"forward": lambda m, b: m(b["x"]), "targets": lambda b: b["y"], "loss_on_batch": True}, ValueError,
     "targets: not used with loss_on_batch=True"),
    ({"forward": "model", "targets": lambda b: b["y"]}, TypeError, "forward: expected a callable"),
    ({"forward": lambda m, b: m(b["x"]), "targets": lambda b: b["y"], "output": 1.5}, TypeError, "output: expected"),
], ids=["dict-without-forward", "no-targets", "tuple-output", "missing-key", "targets-and-batch", "bad-forward",
        "bad-output"])
def test_hooks_that_are_missing_or_wrong_are_named(kwargs, exc, match):
    model, batch = _mlp_dict_problem()
    with pytest.raises(exc, match=match):
        HessianOperator(model, nn.CrossEntropyLoss(), batch, **kwargs).gradient()


def test_builtin_loss_cannot_take_the_batch():
    model, batch = _mlp_dict_problem()
    with pytest.raises(ValueError, match="loss_on_batch=True: cross_entropy takes"):
        HessianOperator(model, nn.CrossEntropyLoss(), batch, forward=lambda m, b: m(b["x"]), loss_on_batch=True)


def test_non_scalar_user_loss_is_rejected_with_its_shape_by_every_operator():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    for cls in (HessianOperator, GGNOperator):
        op = cls(model, lambda out, t: F.cross_entropy(out, t, reduction="none"), (X, y))
        with pytest.raises(ValueError, match=r"scalar.*\(10,\)"):
            op @ torch.ones(op.shape[0], dtype=torch.float64)


def test_all_terms_ignored_is_an_error_not_a_nan():
    model, (X, _) = tm.mlp([3, 4, 3]), tm.classification(6, 3, 3)
    y = torch.full((6,), -100)
    with pytest.raises(ValueError, match=r"normalizer sum_b Z_b is 0\.0, not positive"):
        GGNOperator(model, nn.CrossEntropyLoss(), [(X[:3], y[:3]), (X[3:], y[3:])]).loss()


class Repeating:
    """An endless re-iterable of batches (each pass starts over)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        while True:
            yield from self.batches


def test_num_batches_takes_the_first_batches_of_every_pass():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    parts = [(X[:4], y[:4]), (X[4:7], y[4:7]), (X[7:], y[7:])]
    H = HessianOperator(model, nn.CrossEntropyLoss(), Repeating(parts), num_batches=2)
    ref = HessianOperator(model, nn.CrossEntropyLoss(), parts[:2])
    V = torch.randn(H.shape[0], 2, dtype=torch.float64)
    assert tm.rel_err(H @ V, ref @ V) < 1e-14 and H.num_samples == 7
    with pytest.raises(ValueError, match="num_batches"):
        HessianOperator(model, nn.CrossEntropyLoss(), parts, num_batches=0)


def test_sample_count_comes_from_the_outputs_and_the_normalizer_from_the_loss():
    # a scalar user loss is the mean over the samples (first dimension of the outputs); with
    # (sum, normalizer) the loss says what it divides by. Batches of 2 and 6 samples, 1 and 9 tokens.
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(8, 3, 3)
    counts = torch.tensor([1.0, 0.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    data = [{"x": X[:2], "y": y[:2], "c": counts[:2]}, {"x": X[2:], "y": y[2:], "c": counts[2:]}]

    def token_loss(out, b):
        per = F.cross_entropy(out, b["y"], reduction="none")
        return (per * b["c"]).sum(), b["c"].sum()

    op = GGNOperator(model, token_loss, data, forward=lambda m, b: m(b["x"]), loss_on_batch=True)
    with torch.no_grad():
        per = F.cross_entropy(model(X), y, reduction="none")
    assert abs(float(op.loss()) - float((per * counts).sum() / counts.sum())) < 1e-14
    assert op.num_samples == 8


def test_a_loss_modules_options_are_read_on_every_call():
    # class weights set on the loss module after the operator was built are the ones used
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    loss = nn.CrossEntropyLoss()
    G = GGNOperator(model, loss, (X, y))
    loss.weight = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    ref = GGNOperator(model, nn.CrossEntropyLoss(weight=loss.weight), (X, y))
    assert tm.rel_err(G.to_dense(), ref.to_dense()) < 1e-14 and float(G.loss()) == float(ref.loss())
    loss.reduction = "none"
    with pytest.raises(ValueError, match="reduction='none' is not supported"):
        G.loss()
