"""Mode policy, exact restore of model state, dtype/device handling and bad input of the torch operators."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the torch convention

from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator
from tests import _torch_models as tm

CE = nn.CrossEntropyLoss()
OPS = {
    "hessian": HessianOperator,
    "ggn": GGNOperator,
    "fisher-mc": functools.partial(FisherOperator, kind="mc", mc_samples=2),
    "fisher-emp": functools.partial(FisherOperator, kind="empirical"),
}


def _snapshot(model: nn.Module):
    return [m.training for m in model.modules()], {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("initially_training", [True, False], ids=["model-train", "model-eval"])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_model_state_and_rng_restored(name, mode, initially_training):
    model = tm.bn_model(dropout=0.3)
    model.train(initially_training)
    X, y = tm.classification(10, 3, 3)
    flags, state = _snapshot(model)
    rng = torch.get_rng_state()
    op = OPS[name](model, CE, [(X[:6], y[:6]), (X[6:], y[6:])], mode=mode)
    V = torch.randn(op.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op @ V, op @ V[:, 0], op.gradient(), op.loss()
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())  # running stats, num_batches_tracked, weights
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.equal(torch.get_rng_state(), rng)


def test_state_restored_when_the_loss_raises():
    model = tm.bn_model()
    model.train()
    X, y = tm.classification(8, 3, 3)

    def bad_loss(out, target):
        if out.shape[0] < 5:
            raise RuntimeError("boom")
        return CE(out, target)

    H = HessianOperator(model, bad_loss, [(X[:5], y[:5]), (X[5:], y[5:])])
    with pytest.raises(RuntimeError, match="boom"):
        H.gradient()
    assert model.training and model[1].training and model[1].track_running_stats


def test_train_mode_uses_batch_statistics():
    model = tm.bn_model()
    X, y = tm.classification(10, 3, 3)
    H = HessianOperator(model, CE, (X, y), mode="train")
    oracle = copy.deepcopy(model).train()  # batch statistics; its own running stats may change
    assert tm.rel_err(H.to_dense(), tm.dense_hessian(oracle, CE, X, y)) < 1e-10
    assert tm.rel_err(HessianOperator(model, CE, (X, y)).to_dense(), H.to_dense()) > 1e-3  # eval differs


@pytest.mark.parametrize("name", sorted(OPS))
def test_train_mode_dropout_gives_one_fixed_symmetric_operator(name):
    model = tm.bn_model(dropout=0.5)
    X, y = tm.classification(10, 3, 3)
    op = OPS[name](model, CE, [(X[:5], y[:5]), (X[5:], y[5:])], mode="train")
    D1, D2 = op.to_dense(), op.to_dense()
    assert torch.equal(D1, D2)
    assert tm.rel_err(D1.T, D1) < 1e-12
    v = torch.randn(op.shape[0], dtype=torch.float64)
    assert tm.rel_err(op @ v, D1 @ v) < 1e-12  # the vmapped and single-column paths agree


@pytest.mark.parametrize("name", sorted(OPS))
def test_max_columns_chunks_give_the_same_product(name):
    model, (X, y) = tm.cnn(), tm.classification(7, (1, 5, 5), 3)
    full, chunked = OPS[name](model, CE, (X, y)), OPS[name](model, CE, (X, y), max_columns=2)
    V = torch.randn(full.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert tm.rel_err(chunked @ V, full @ V) < 1e-13
    with pytest.raises(ValueError, match="max_columns"):
        OPS[name](model, CE, (X, y), max_columns=0)


def test_float32_model_runs_in_float32():
    model = tm.mlp([3, 4, 3]).float()
    X, y = tm.classification(10, 3, 3)
    H = HessianOperator(model, CE, (X, y))  # float64 data is cast to the model's dtype
    assert H.dtype == torch.float32 and H.gradient().dtype == torch.float32
    dense = tm.dense_hessian(copy.deepcopy(model).double(), CE, X, y)
    assert tm.rel_err(H.to_dense().double(), dense) < 1e-5


def test_dtype_float64_on_a_float32_model_uses_cast_copies():
    model = tm.bn_model().float()
    X, y = tm.classification(10, 3, 3)
    H = HessianOperator(model, CE, (X.float(), y), dtype="float64")
    assert H.dtype == torch.float64
    assert all(p.dtype == torch.float32 for p in model.parameters())
    oracle = copy.deepcopy(model).double().eval()
    assert tm.rel_err(H.to_dense(), tm.dense_hessian(oracle, CE, X.float().double(), y)) < 1e-10
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())


def test_vectors_float_cast_other_kinds_rejected():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    H = HessianOperator(model, CE, (X, y))
    v = torch.randn(H.shape[0], dtype=torch.float64)
    assert tm.rel_err(H @ v.float(), H @ v) < 1e-6 and (H @ v.float()).dtype == torch.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        H @ torch.ones(H.shape[0], dtype=torch.int64)
    with pytest.raises(TypeError, match="numpy"):
        H @ np.ones(H.shape[0])
    with pytest.raises(TypeError, match="device"):
        H @ torch.ones(H.shape[0], dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"\(31,\).*got \(3,\)"):
        H @ torch.ones(3, dtype=torch.float64)


def test_mixed_parameter_dtypes_need_dtype():
    model = tm.mlp([3, 4, 3])
    model[2].float()
    X, y = tm.classification(10, 3, 3)
    with pytest.raises(TypeError, match="several dtypes"):
        HessianOperator(model, CE, (X, y))
    assert HessianOperator(model, CE, (X, y), dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(reduction="none"), nn.MSELoss(reduction="none"),
                                     functools.partial(F.cross_entropy, reduction="none"),
                                     functools.partial(F.mse_loss, reduction="batchmean")],
                         ids=["ce-none", "mse-none", "partial-none", "partial-batchmean"])
def test_per_term_or_unknown_reduction_rejected(loss_fn):
    # reduction="sum" and "mean" are both read exactly (tests/test_curvature_torch_zoo.py); "none" has no
    # sum and normalizer to read
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    with pytest.raises(ValueError, match=r"reduction='(none|batchmean)' is not supported.*'mean' or 'sum'"):
        HessianOperator(model, loss_fn, (X, y))


def test_non_scalar_custom_loss_rejected():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    H = GGNOperator(model, lambda out, t: F.cross_entropy(out, t, reduction="none"), (X, y))
    with pytest.raises(ValueError, match=r"scalar.*\(10,\)"):
        H.loss()


@pytest.mark.parametrize("data, match", [
    ([], "empty"),
    (lambda X, y: (X[:0], y[:0]), "empty"),
    (lambda X, y: [(X[:4], y[:4]), (X[4:], y[5:])], r"batch 1: .*\(6, 3\).*\(5,\)"),
    (lambda X, y: [(X, y, y)], "batch 0: expected an \\(X, y\\) pair"),
], ids=["no-batches", "zero-samples", "mismatched", "triple"])
def test_bad_data_rejected(data, match):
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    with pytest.raises(ValueError, match=match):
        HessianOperator(model, CE, data(X, y) if callable(data) else data)


def test_one_shot_iterator_and_non_iterable_rejected():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    with pytest.raises(TypeError, match="one-shot iterator"):
        HessianOperator(model, CE, iter([(X, y)]))
    with pytest.raises(TypeError, match="data: expected"):
        HessianOperator(model, CE, X)


@pytest.mark.parametrize("params, exc, match", [
    (["0.weight", "nope"], ValueError, "params\\[1\\]: 'nope' is not a parameter name"),
    ([nn.Parameter(torch.zeros(2))], ValueError, "params\\[0\\]: the tensor of shape \\(2,\\) is not a parameter"),
    (["0.bias", "0.bias"], ValueError, "selected twice"),
    ([], ValueError, "empty list"),
    ("0.weight", TypeError, "list of parameter names"),
], ids=["unknown-name", "foreign-tensor", "duplicate", "empty", "bare-string"])
def test_bad_params_rejected(params, exc, match):
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    with pytest.raises(exc, match=match):
        HessianOperator(model, CE, (X, y), params=params)


def test_bad_arguments_rejected():
    model, (X, y) = tm.mlp([3, 4, 3]), tm.classification(10, 3, 3)
    with pytest.raises(ValueError, match="mode: expected 'eval' or 'train'"):
        HessianOperator(model, CE, (X, y), mode="inference")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        HessianOperator(lambda x: x, CE, (X, y))
    with pytest.raises(ValueError, match="kind: expected 'mc' or 'empirical'"):
        FisherOperator(model, CE, (X, y), kind="exact")
    with pytest.raises(ValueError, match="mc_samples"):
        FisherOperator(model, CE, (X, y), mc_samples=0)
    with pytest.raises(ValueError, match="known likelihood"):
        FisherOperator(model, nn.SmoothL1Loss(), tm.regression(10, 3, 3))
    with pytest.raises(TypeError, match="dtype: expected"):
        HessianOperator(model, CE, (X, y), dtype="float16")
