"""The torch operators on a zoo of models, losses and batch structures, against dense references.

Each case (``tests/_torch_zoo.py``) is a model, a loss, a data set and the hooks that describe
its batches. The references are computed from the definition ``L = sum_b S_b / sum_b Z_b``
alone; the operators must equal them (float64, 1e-10) for the data given as one batch, as a
list of uneven batches and as a DataLoader with a short last batch.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.data import DataLoader

from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator
from tests import _torch_zoo as zoo

TOL = 1e-10
CASES = zoo.cases()
IDS = [c.name for c in CASES]
FORMS = ["one", "list", "loader"]
_REFS: dict[tuple[str, str], tuple] = {}


def _data(case: zoo.Case, form: str):
    """``(data argument, batches it consists of)`` for one of the three forms."""
    (batch,) = case.data()
    if form == "one" or not case.splittable:
        return batch, [batch]
    n = zoo._first_dim(batch)
    if form == "list":
        pieces = zoo.split(batch, [n // 3, n // 3 + n // 2])
        return pieces, pieces
    loader = DataLoader([zoo._take(batch, i) for i in range(n)], batch_size=5 if case.mode == "train" else 4)
    return loader, list(loader)


def _reference(case: zoo.Case, form: str):
    """Cached ``(model, data, Reference)``: per form only when the operator depends on the batching."""
    key = (case.name, form if case.mode == "train" else "one")
    if key not in _REFS:
        model = case.model()
        _, batches = _data(case, key[1])
        _REFS[key] = (model, zoo.Reference(case, model, batches))
    model, ref = _REFS[key]
    return model, _data(case, form)[0], ref


def _op(cls, case: zoo.Case, model, data, **kw):
    return cls(model, case.loss, data, params=case.params, mode=case.mode, **case.hooks, **kw)


def _columns(P: int) -> torch.Tensor:
    return torch.randn(P, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _check(op, dense_ref: torch.Tensor, form: str) -> None:
    if float(dense_ref.abs().max()) == 0.0:  # e.g. the GGN of NLL or KL on log-probabilities: exactly zero
        assert float(op.to_dense().abs().max()) == 0.0
    elif form == "one":
        assert zoo.rel(op.to_dense(), dense_ref) < TOL
    else:
        V = _columns(op.shape[0])
        assert zoo.rel(op @ V, dense_ref @ V) < TOL


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian_equals_the_dense_hessian_of_the_data_set_loss(case, form):
    model, data, ref = _reference(case, form)
    _check(_op(HessianOperator, case, model, data), ref.hessian(), form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ggn_equals_explicit_jt_h_j(case, form):
    model, data, ref = _reference(case, form)
    _check(_op(GGNOperator, case, model, data), ref.ggn(), form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_empirical_fisher_is_the_weighted_mean_of_per_term_outer_products(case, form):
    model, data, ref = _reference(case, form)
    _check(_op(FisherOperator, case, model, data, kind="empirical"), ref.empirical_fisher(), form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_and_loss_are_those_of_the_data_set_loss(case, form):
    model, data, ref = _reference(case, form)
    op = _op(GGNOperator, case, model, data)
    assert zoo.rel(op.gradient(), ref.gradient()) < 1e-12
    want = ref.loss(ref.theta0)
    assert abs(float(op.loss()) - float(want)) <= 1e-12 * abs(float(want))


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("mlp-gelu-ce-weight-ignore", "causal-lm-tied-ignore",
                                                                  "mlp-mse-sum")], ids=lambda c: c.name)
def test_float32_operators_match_the_float64_truth(case):
    model, data, ref = _reference(case, "list")
    H64 = ref.hessian()
    op = _op(HessianOperator, case, model, data, dtype="float32")
    assert op.dtype == torch.float32
    V = _columns(op.shape[0])
    assert zoo.rel((op @ V.float()).double(), H64 @ V) < 1e-5
    G32 = _op(GGNOperator, case, model, data, dtype="float32")
    assert zoo.rel((G32 @ V.float()).double(), ref.ggn() @ V) < 1e-5


@pytest.mark.parametrize("case", [c for c in CASES if c.mc], ids=lambda c: c.name)
def test_mc_fisher_does_not_depend_on_the_batching(case):
    model, _, _ = _reference(case, "one")
    ops = [_op(FisherOperator, case, model, _data(case, f)[0], kind="mc", mc_samples=3, seed=4) for f in FORMS]
    V = _columns(ops[0].shape[0])
    one = ops[0] @ V
    assert torch.equal(ops[0] @ V, one)  # the same draws in every product
    for other in ops[1:]:
        assert zoo.rel(other @ V, one) < 1e-12


def _mc_sq_error(case: zoo.Case, samples: int, seed: int) -> float:
    model, data, ref = _reference(case, "one")
    GV = _REFS.setdefault((case.name, "ggn"), (None, ref.ggn()))[1] @ _columns(ref.theta0.numel())
    F_mc = _op(FisherOperator, case, model, data, kind="mc", mc_samples=samples, seed=seed)
    return float(torch.linalg.norm(F_mc @ _columns(F_mc.shape[0]) - GV) ** 2)


@pytest.mark.parametrize("name", ["lstm-tagger", "mlp-ce-smooth-weight-ignore", "mlp-mse"])
def test_mc_fisher_converges_to_the_ggn_like_one_over_sqrt_samples(name):
    # unbiased with independent draws: E||F_S - G||^2 ~ 1/S, so 16x more draws cut the rms error by 4
    # (estimated over 12 seeds, spread about 3.5-4.6); a biased estimate (e.g. one that counts
    # ignored positions) stalls and the ratio falls towards 1
    case = next(c for c in CASES if c.name == name)
    seeds = range(12)
    ratio = (sum(_mc_sq_error(case, 16, s) for s in seeds) / sum(_mc_sq_error(case, 256, s) for s in seeds)) ** 0.5
    assert 2.8 < ratio < 5.7, ratio


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")  # KLDiv 'mean', on purpose
def test_reading_of_every_builtin_loss_matches_torchs_mean():
    # S_b / Z_b must be torch's own mean for every built-in loss and option (the normalizer read exactly)
    from specop.curvature.torch._recognise import make_loss

    g = torch.Generator().manual_seed(0)
    Z, Zt = torch.randn(6, 3, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    idx = torch.randint(0, 3, (6, 4), generator=g)
    idx[0, 1] = idx[3, 2] = 7
    prob = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), 1)
    w = torch.rand(6, 3, generator=g, dtype=torch.float64)
    F = torch.nn.functional
    nn = torch.nn
    cases = [
        (nn.CrossEntropyLoss(weight=zoo.W3, ignore_index=7, label_smoothing=0.3), Z, idx),
        (nn.CrossEntropyLoss(weight=zoo.W3, label_smoothing=0.2), Zt, prob),
        (nn.NLLLoss(weight=zoo.W3, ignore_index=7), torch.log_softmax(Z, 1), idx),
        (nn.MSELoss(), Zt, prob), (functools.partial(F.mse_loss, weight=w), Zt, prob),
        (functools.partial(F.l1_loss, weight=w), Zt, prob), (functools.partial(F.huber_loss, weight=w), Zt, prob),
        (nn.BCEWithLogitsLoss(weight=w[0], pos_weight=zoo.W3), Zt, prob), (nn.BCELoss(), torch.sigmoid(Zt), prob),
        (nn.L1Loss(), Zt, prob), (nn.SmoothL1Loss(beta=0.3), Zt, prob), (nn.HuberLoss(delta=0.4), Zt, prob),
        (nn.KLDivLoss(reduction="batchmean"), torch.log_softmax(Zt, 1), prob),
        (nn.KLDivLoss(reduction="mean", log_target=True), torch.log_softmax(Zt, 1), prob.log()),
    ]
    for loss, out, t in cases:
        b = make_loss(loss).batch_loss(out, t)
        assert abs(float(b.total / b.normalizer) - float(loss(out, t))) < 1e-13, loss
