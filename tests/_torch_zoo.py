"""A zoo of small torch models, losses and batch structures, with dense references from the definition.

Every reference is written here, independently of specop, straight from the definition of the
data-set loss ``L(theta) = sum_b S_b(theta) / sum_b Z_b``:

* ``S_b`` is the loss's sum over its terms (``reduction="sum"`` of the torch loss itself),
  ``Z_b`` what torch's mean divides by, written out per loss (``RefLoss``);
* Hessian: ``torch.autograd.functional.hessian`` of ``L`` in the flat parameters;
* GGN: ``sum_b J_b^T H_b J_b / sum_b Z_b`` with explicit Jacobians and output Hessians;
* empirical Fisher: ``sum_n w_n g_n g_n^T / sum_b Z_b`` from per-term gradients ``g_n`` of the
  unweighted term losses ``l_n = s_n / w_n``.

Models are tiny (P of tens to a few hundred) so that all of it takes seconds.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

DT = torch.float64
IGNORE = -100


# ------------------------------------------------------------------------ reference losses
@dataclass(frozen=True)
class RefLoss:
    """``total(Z, t)`` = S_b, ``norm(Z, t)`` = Z_b (None: summed), ``terms(Z, t)`` = (s_n, w_n) per term."""

    total: Callable[[torch.Tensor, Any], torch.Tensor]
    norm: Callable[[torch.Tensor, Any], Any]
    terms: Callable[[torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


def ce_ref(weight: torch.Tensor | None = None, ignore: int = IGNORE, smoothing: float = 0.0,
           reduction: str = "mean") -> RefLoss:
    def opts() -> dict[str, Any]:
        return {"weight": weight, "ignore_index": ignore, "label_smoothing": smoothing}

    def norm(Z: torch.Tensor, t: torch.Tensor) -> Any:
        if reduction == "sum":
            return None
        if t.is_floating_point():  # soft targets: the number of positions
            return Z.numel() // Z.shape[1]
        keep = t != ignore
        w = torch.ones(Z.shape[1], dtype=DT) if weight is None else weight
        return float(sum(w[int(c)] for c in t[keep].reshape(-1)))

    def terms(Z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = F.cross_entropy(Z, t, **opts(), reduction="none").reshape(-1)
        if t.is_floating_point():
            return s, torch.ones_like(s)
        w = torch.ones(Z.shape[1], dtype=DT) if weight is None else weight
        flat = t.reshape(-1)
        return s, torch.stack([w[int(c)] if int(c) != ignore else torch.zeros((), dtype=DT) for c in flat])

    return RefLoss(lambda Z, t: F.cross_entropy(Z, t, **opts(), reduction="sum"), norm, terms)


def nll_ref(ignore: int = IGNORE) -> RefLoss:
    def terms(Z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.nll_loss(Z, t, ignore_index=ignore, reduction="none").reshape(-1), (t != ignore).reshape(-1).to(DT)

    return RefLoss(lambda Z, t: F.nll_loss(Z, t, ignore_index=ignore, reduction="sum"),
                   lambda Z, t: int((t != ignore).sum()), terms)


def elementwise_ref(fn: Callable[..., torch.Tensor], reduction: str = "mean", **kw: Any) -> RefLoss:
    """Sample-term losses: ``s_n`` the sample's sum; ``w_n`` its element count (mean) or 1."""
    def terms(Z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = fn(Z, t, **kw, reduction="none").reshape(Z.shape[0], -1).sum(1)
        per = Z[0].numel() if reduction == "mean" else 1
        return s, torch.full_like(s, float(per))

    norm = {"mean": lambda Z, t: Z.numel(), "sum": lambda Z, t: None, "batchmean": lambda Z, t: Z.shape[0]}[reduction]
    return RefLoss(lambda Z, t: fn(Z, t, **kw, reduction="sum"), norm, terms)


def masked_sq_loss(out: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A user loss on the batch: masked squared error, returned as (sum, number of unmasked entries)."""
    m = batch["mask"].to(out.dtype)
    return ((out - batch["y"]) ** 2 * m).sum(), m.sum()


def masked_sq_ref() -> RefLoss:
    def terms(Z: torch.Tensor, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        m = b["mask"].to(DT)
        return ((Z - b["y"]) ** 2 * m).reshape(Z.shape[0], -1).sum(1), m.reshape(Z.shape[0], -1).sum(1)

    return RefLoss(lambda Z, b: masked_sq_loss(Z, b)[0], lambda Z, b: float(b["mask"].sum()), terms)


# ------------------------------------------------------------------------------- models
def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(act: type[nn.Module] = nn.Tanh, d: int = 4, out: int = 3, seed: int = 0, final: nn.Module | None = None):
    torch.manual_seed(seed)
    layers = [nn.Linear(d, 6), act(), nn.Linear(6, out)] + ([final] if final is not None else [])
    return nn.Sequential(*layers).double()


def cnn_pool(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).double()


def cnn_groupnorm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).double()


def batchnorm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        model[1].running_mean.copy_(torch.randn(5, dtype=DT) * 0.3)
        model[1].running_var.copy_(torch.rand(5, dtype=DT) + 0.5)
    return model


def layernorm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 3)).double()


class EncoderClassifier(nn.Module):
    """Token classifier: embedding, 2-layer transformer encoder with a padding mask, masked mean pool."""

    def __init__(self, vocab: int = 5, d: int = 4, classes: int = 3, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, 4, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)
        self.double()

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.enc(self.emb(tokens), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1))


class CausalLM(nn.Module):
    """A one-layer causal transformer LM with tied input/output embeddings; logits as (B, V, T)."""

    def __init__(self, vocab: int = 6, d: int = 4, T: int = 5, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.1 * torch.randn(T, d))
        self.block = nn.TransformerEncoderLayer(d, 2, 4, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.double()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=self.pos.dtype)
        h = self.norm(self.block(self.emb(tokens) + self.pos[:T], src_mask=causal, is_causal=True))
        return (h @ self.emb.weight.T).transpose(1, 2)  # tied embeddings


class Tagger(nn.Module):
    """Embedding + LSTM or GRU + linear per token; logits as (B, tags, T)."""

    def __init__(self, rnn: str = "lstm", vocab: int = 5, d: int = 3, hidden: int = 3, tags: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        self.rnn = (nn.LSTM if rnn == "lstm" else nn.GRU)(d, hidden, batch_first=True)
        self.out = nn.Linear(hidden, tags)
        self.double()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(tokens))[0]).transpose(1, 2)


class TwoInputs(nn.Module):
    """``forward(x1, x2)``: two input branches summed, then a head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.head = nn.Linear(3, 4), nn.Linear(2, 4), nn.Linear(4, 3)
        self.double()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.a(x1) + self.b(x2)))


class ModelOutput(collections.OrderedDict):
    """A Hugging Face style output: a dict that also answers attributes and integer indices."""

    def __getattr__(self, k: str) -> Any:
        try:
            return self[k]
        except KeyError as exc:
            raise AttributeError(k) from exc

    def __getitem__(self, k: Any) -> Any:
        return list(self.values())[k] if isinstance(k, int) else super().__getitem__(k)


class Structured(nn.Module):
    """Keyword inputs (``model(**batch["inputs"])``) and a tuple, dict or ModelOutput return value."""

    def __init__(self, returns: str = "tuple", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.returns = returns
        self.body, self.head = nn.Linear(4, 5), nn.Linear(5, 3)
        self.double()

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> Any:
        h = torch.tanh(self.body(features)) * scale.unsqueeze(-1)
        logits = self.head(h)
        if self.returns == "tuple":
            return logits, h
        if self.returns == "dict":
            return {"hidden": h, "logits": logits}
        return ModelOutput(logits=logits, hidden=h)


class Encoding(collections.UserDict):
    """A ``BatchEncoding`` stand-in: a Mapping (not a dict) that also answers attributes."""

    def __getattr__(self, k: str) -> Any:
        if k == "data":
            raise AttributeError(k)
        try:
            return self.data[k]
        except KeyError as exc:
            raise AttributeError(k) from exc


@dataclasses.dataclass
class Example:
    """A dataclass batch."""

    x: torch.Tensor
    y: torch.Tensor


# ------------------------------------------------------------------------------- data
def tokens(n: int, T: int, vocab: int, seed: int, min_len: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded at the end with 0 and the padding mask (True = pad); lengths differ."""
    g = seeded(seed)
    ids = torch.randint(1, vocab, (n, T), generator=g)
    lengths = torch.randint(min_len, T + 1, (n,), generator=g)
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    return ids.masked_fill(pad, 0), pad


def lm_batches(n: int = 7, T: int = 5, vocab: int = 6, seed: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids, pad = tokens(n, T, vocab, seed)
    targets = torch.roll(ids, -1, dims=1)
    targets[:, -1] = IGNORE
    targets = targets.masked_fill(torch.roll(pad, -1, dims=1) | pad, IGNORE)
    return [(ids, targets)]


# -------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One model, loss and data set, with the hooks that describe them to specop.

    ``data()`` gives the data set as one list of whole-data batches; ``split`` cuts each
    into pieces for the list / DataLoader forms (``None``: the structure cannot be split).
    """

    name: str
    model: Callable[[], nn.Module]
    loss: Any
    ref: RefLoss
    data: Callable[[], Any]
    call: Callable[[nn.Module, Any], Any] = field(default=lambda m, b: m(b[0]))
    target: Callable[[Any], Any] = field(default=lambda b: b[1])
    hooks: dict[str, Any] = field(default_factory=dict)
    select: Callable[[Any], torch.Tensor] = field(default=lambda out: out)
    mode: str = "eval"
    params: list[str] | None = None
    splittable: bool = True
    mc: bool = False


def _rows(X: Any, seed: int, n: int, d: Any = 4) -> torch.Tensor:
    shape = (n, d) if isinstance(d, int) else (n, *d)
    return torch.randn(shape, generator=seeded(seed), dtype=DT)


def classes(n: int = 9, d: Any = 4, c: int = 3, seed: int = 1, ignore: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    X = _rows(None, seed, n, d)
    y = torch.randint(0, c, (n,), generator=seeded(seed + 1))
    if ignore:
        y[torch.randperm(n, generator=seeded(seed + 2))[:ignore]] = IGNORE
    return X, y


def soft(n: int = 9, c: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    X = _rows(None, seed, n)
    return X, torch.softmax(torch.randn(n, c, generator=seeded(seed + 3), dtype=DT), 1)


def regress(n: int = 9, out: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return _rows(None, seed, n), torch.randn(n, out, generator=seeded(seed + 4), dtype=DT)


W3 = torch.tensor([0.5, 2.0, 1.25], dtype=DT)


def cases() -> list[Case]:
    ce = nn.CrossEntropyLoss
    lm_hooks = {}
    enc_data = lambda: [_encoder_batch(9, 4)]  # noqa: E731
    return [
        Case("mlp-tanh-ce", lambda: mlp(nn.Tanh), ce(), ce_ref(), lambda: [classes()], mc=True),
        Case("mlp-relu-ce-sum", lambda: mlp(nn.ReLU), ce(reduction="sum"), ce_ref(reduction="sum"),
             lambda: [classes()]),
        Case("mlp-gelu-ce-weight-ignore", lambda: mlp(nn.GELU), ce(weight=W3), ce_ref(W3),
             lambda: [classes(ignore=3)], mc=True),
        Case("mlp-ce-smooth-weight-ignore", lambda: mlp(nn.Tanh, seed=2), ce(weight=W3, label_smoothing=0.2),
             ce_ref(W3, smoothing=0.2), lambda: [classes(ignore=2)], mc=True),
        Case("mlp-ce-soft-targets", lambda: mlp(nn.Tanh, seed=3), ce(label_smoothing=0.1), ce_ref(smoothing=0.1),
             lambda: [soft()], mc=True),
        Case("mlp-mse", lambda: mlp(nn.Tanh), nn.MSELoss(), elementwise_ref(F.mse_loss), lambda: [regress()],
             mc=True),
        Case("mlp-mse-sum", lambda: mlp(nn.ReLU, seed=1), nn.MSELoss(reduction="sum"),
             elementwise_ref(F.mse_loss, "sum"), lambda: [regress()], mc=True),
        Case("mlp-bce-logits", lambda: mlp(nn.Tanh), nn.BCEWithLogitsLoss(),
             elementwise_ref(F.binary_cross_entropy_with_logits),
             lambda: [(regress()[0], torch.rand(9, 3, generator=seeded(7), dtype=DT))]),
        Case("mlp-nll", lambda: mlp(nn.Tanh, final=nn.LogSoftmax(1)), nn.NLLLoss(), nll_ref(),
             lambda: [classes(ignore=2)]),
        Case("mlp-kl-batchmean", lambda: mlp(nn.Tanh, final=nn.LogSoftmax(1)), nn.KLDivLoss(reduction="batchmean"),
             elementwise_ref(F.kl_div, "batchmean"), lambda: [soft()]),
        Case("mlp-user-sum-normalizer", lambda: mlp(nn.Tanh), masked_sq_loss, masked_sq_ref(),
             lambda: [{"x": _rows(None, 5, 9), "y": torch.randn(9, 3, generator=seeded(6), dtype=DT),
                       "mask": torch.rand(9, 3, generator=seeded(8)) > 0.4}],
             call=lambda m, b: m(b["x"]), target=lambda b: b,
             hooks={"forward": lambda m, b: m(b["x"]), "loss_on_batch": True}),
        Case("cnn-pool-ce", cnn_pool, ce(), ce_ref(), lambda: [classes(d=(1, 6, 6))]),
        Case("cnn-groupnorm-ce", cnn_groupnorm, ce(), ce_ref(), lambda: [classes(d=(1, 6, 6))]),
        Case("batchnorm-eval", batchnorm, ce(), ce_ref(), lambda: [classes()]),
        Case("batchnorm-train", batchnorm, ce(), ce_ref(), lambda: [classes()], mode="train"),
        Case("layernorm-gelu", layernorm, ce(weight=W3), ce_ref(W3), lambda: [classes(ignore=1)]),
        Case("encoder-padding-mask", EncoderClassifier, ce(), ce_ref(), enc_data,
             call=lambda m, b: m(b["tokens"], b["pad"]), target=lambda b: b["label"],
             hooks={"forward": lambda m, b: m(b["tokens"], b["pad"]), "targets": lambda b: b["label"]}),
        Case("causal-lm-tied-ignore", CausalLM, ce(), ce_ref(), lm_batches, hooks=lm_hooks, mc=True),
        Case("lstm-tagger", lambda: Tagger("lstm"), ce(), ce_ref(), lambda: _tag_batches(5), mc=True),
        Case("gru-tagger", lambda: Tagger("gru"), ce(weight=W3), ce_ref(W3), lambda: _tag_batches(6)),
        Case("two-inputs", TwoInputs, ce(), ce_ref(),
             lambda: [(_rows(None, 1, 8, 3), _rows(None, 2, 8, 2), torch.randint(0, 3, (8,), generator=seeded(3)))],
             call=lambda m, b: m(b[0], b[1]), target=lambda b: b[2],
             hooks={"forward": lambda m, b: m(b[0], b[1]), "targets": lambda b: b[2]}),
        Case("dict-inputs-tuple-output", lambda: Structured("tuple"), ce(), ce_ref(), lambda: [_structured(9)],
             call=lambda m, b: m(**b["inputs"]), target=lambda b: b["labels"], select=lambda out: out[0],
             hooks={"forward": lambda m, b: m(**b["inputs"]), "targets": lambda b: b["labels"], "output": 0}),
        Case("encoding-dict-output", lambda: Structured("dict"), ce(), ce_ref(), lambda: [_structured(9, Encoding)],
             call=lambda m, b: m(b.features, b.scale), target=lambda b: b.labels, select=lambda out: out["logits"],
             hooks={"forward": lambda m, b: m(b.features, b.scale), "targets": lambda b: b.labels,
                    "output": "logits"}, splittable=False),
        Case("dataclass-modeloutput", lambda: Structured("modeloutput"), ce(), ce_ref(),
             lambda: [Example(_rows(None, 4, 9), torch.randint(0, 3, (9,), generator=seeded(5)))],
             call=lambda m, b: m(b.x, torch.ones(b.x.shape[0], dtype=b.x.dtype)), target=lambda b: b.y,
             select=lambda out: out.logits,
             hooks={"forward": lambda m, b: m(b.x, torch.ones(b.x.shape[0], dtype=b.x.dtype)),
                    "targets": lambda b: b.y, "output": lambda out: out.logits}, splittable=False),
    ]


def _encoder_batch(n: int, T: int, seed: int = 11) -> dict[str, torch.Tensor]:
    ids, pad = tokens(n, T, 5, seed)
    return {"tokens": ids, "pad": pad, "label": torch.randint(0, 3, (n,), generator=seeded(seed + 1))}


def _tag_batches(n: int, T: int = 4, seed: int = 21) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids, pad = tokens(n, T, 5, seed)
    tags = torch.randint(0, 3, (n, T), generator=seeded(seed + 1)).masked_fill(pad, IGNORE)
    return [(ids, tags)]


def _structured(n: int, kind: type = dict) -> Any:
    X = _rows(None, 9, n)
    scale = torch.rand(n, generator=seeded(10), dtype=DT) + 0.5
    labels = torch.randint(0, 3, (n,), generator=seeded(12))
    if kind is Encoding:
        return Encoding(features=X, scale=scale, labels=labels)
    return {"inputs": {"features": X, "scale": scale}, "labels": labels}


# ------------------------------------------------------------------------------ batching
def split(batch: Any, cuts: list[int]) -> list[Any]:
    """The batch cut into consecutive pieces along the first dimension of every tensor."""
    bounds = [0, *cuts]
    n = _first_dim(batch)
    bounds.append(n)
    return [_take(batch, slice(a, b)) for a, b in itertools.pairwise(bounds)]


def _first_dim(tree: Any) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.shape[0]
    if isinstance(tree, dict):
        return _first_dim(next(iter(tree.values())))
    return _first_dim(tree[0])


def _take(tree: Any, s: slice) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree[s]
    if isinstance(tree, dict):
        return {k: _take(v, s) for k, v in tree.items()}
    return type(tree)(_take(v, s) for v in tree)


# ----------------------------------------------------------------------------- references
class _Wrap(nn.Module):
    def __init__(self, model: nn.Module, call: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.m, self.call = model, call

    def forward(self, batch: Any) -> Any:
        return self.call(self.m, batch)


@dataclass
class Reference:
    """Dense curvatures of the data-set loss of ``case`` over ``batches``, at the model's parameters."""

    case: Case
    model: nn.Module
    batches: list[Any]

    def __post_init__(self) -> None:
        self.model = copy.deepcopy(self.model)
        self.model.train(self.case.mode == "train")
        if self.case.mode == "train":  # batch statistics, running statistics left alone
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.track_running_stats = False
        named = dict(self.model.named_parameters())
        self.names = [n for n in named if (self.case.params is None or n in self.case.params)
                      and named[n].requires_grad]
        self.shapes = [named[n].shape for n in self.names]
        self.theta0 = torch.cat([named[n].detach().reshape(-1) for n in self.names])
        self.wrap = _Wrap(self.model, self.case.call)

    def outputs(self, theta: torch.Tensor, batch: Any) -> torch.Tensor:
        parts = torch.split(theta, [s.numel() for s in self.shapes])
        tensors = {"m." + n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}
        with sdpa_kernel([SDPBackend.MATH]):  # the same function; the fused kernels lack double backward
            return self.case.select(functional_call(self.wrap, tensors, (batch,)))

    def normalizer(self) -> float | None:
        zs = [self.case.ref.norm(self.outputs(self.theta0, b).detach(), self.case.target(b)) for b in self.batches]
        return None if zs[0] is None else float(sum(zs))

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        total = sum(self.case.ref.total(self.outputs(theta, b), self.case.target(b)) for b in self.batches)
        Z = self.normalizer()
        return total if Z is None else total / Z

    def hessian(self) -> torch.Tensor:
        return _vectorized(torch.autograd.functional.hessian, self.loss, self.theta0)

    def gradient(self) -> torch.Tensor:
        t = self.theta0.clone().requires_grad_(True)
        return torch.autograd.grad(self.loss(t), t)[0]

    def ggn(self) -> torch.Tensor:
        P = self.theta0.numel()
        G = torch.zeros(P, P, dtype=DT)
        for b in self.batches:
            Zb = self.outputs(self.theta0, b).detach()
            J = _vectorized(torch.autograd.functional.jacobian, lambda t, b=b: self.outputs(t, b),
                            self.theta0).reshape(Zb.numel(), P)
            H = torch.autograd.functional.hessian(
                lambda z, b=b, shape=Zb.shape: self.case.ref.total(z.view(shape), self.case.target(b)),
                Zb.reshape(-1))
            G += J.T @ H @ J
        Z = self.normalizer()
        return G if Z is None else G / Z

    def empirical_fisher(self) -> torch.Tensor:
        """``sum_n w_n g_n g_n^T / sum Z`` with ``g_n`` the gradient of ``l_n = s_n / w_n``."""
        P = self.theta0.numel()
        F_ = torch.zeros(P, P, dtype=DT)
        for b in self.batches:
            def s(t: torch.Tensor, b: Any = b) -> torch.Tensor:
                return self.case.ref.terms(self.outputs(t, b), self.case.target(b))[0]

            w = self.case.ref.terms(self.outputs(self.theta0, b).detach(), self.case.target(b))[1]
            Js = _vectorized(torch.autograd.functional.jacobian, s, self.theta0)  # (terms, P): rows grad s_n
            for n in range(Js.shape[0]):
                if float(w[n]) > 0:
                    g = Js[n] / w[n]
                    F_ += w[n] * torch.outer(g, g)
        Z = self.normalizer()
        return F_ if Z is None else F_ / Z


def _vectorized(fn: Callable[..., torch.Tensor], f: Callable[..., Any], x: torch.Tensor) -> torch.Tensor:
    """``fn(f, x)`` batched over its backward passes, or one pass at a time where a kernel cannot be batched."""
    try:
        return fn(f, x, vectorize=True)
    except RuntimeError:
        return fn(f, x)


def rel(A: torch.Tensor, B: torch.Tensor) -> float:
    """``max|A - B| / max|B|``."""
    return float((A - B).abs().max() / B.abs().max())
