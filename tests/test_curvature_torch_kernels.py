"""Attention kernels, the transformer fast path and sparse embeddings inside the operators' calls.

Scaled-dot-product attention runs on its math kernel during every product, ``gradient()`` and
``loss()`` (the fused CPU kernel has no double backward), the ``nn.MultiheadAttention`` /
``TransformerEncoderLayer`` fast path is off, sparse embeddings compute dense gradients; all of
it scoped to the call: the global flags and module attributes are restored afterwards.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from specop.curvature.torch import GGNOperator, HessianOperator
from tests import _torch_models as tm


class HFStyleAttention(nn.Module):
    """Attention as Hugging Face models write it: projections, F.scaled_dot_product_attention, attn_mask."""

    def __init__(self, d: int = 4, heads: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.heads, self.qkv, self.out = heads, nn.Linear(d, 3 * d), nn.Linear(d, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, d)
        return self.out(h.mean(1))


class MHA(nn.Module):
    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.need_weights = need_weights
        self.att, self.out = nn.MultiheadAttention(4, 2, batch_first=True), nn.Linear(4, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.att(x, x, x, need_weights=self.need_weights)[0].mean(1))


class FrozenEncoder(nn.Module):
    """A frozen TransformerEncoderLayer in eval mode (its fast path applies) under a trainable head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.enc = nn.TransformerEncoderLayer(4, 2, 8, batch_first=True)
        self.head = nn.Linear(4, 3)
        self.double()
        self.enc.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = torch.zeros(x.shape[:2], dtype=torch.bool)
        pad[:, -1] = True
        return self.head(self.enc(x, src_key_padding_mask=pad).sum(1))


def _flags() -> tuple:
    return (torch.backends.mha.get_fastpath_enabled(), torch.backends.cuda.flash_sdp_enabled(),
            torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.math_sdp_enabled(),
            torch.backends.cuda.cudnn_sdp_enabled())


def _reference(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense Hessian and GGN of the trainable parameters, on the math kernel and the standard path."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            model.eval()
            loss = nn.CrossEntropyLoss()
            return tm.dense_hessian(model, loss, X, y), tm.dense_ggn(model, loss, X, y)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


@pytest.mark.parametrize("make", [HFStyleAttention, lambda: MHA(False), lambda: MHA(True), FrozenEncoder],
                         ids=["hf-sdpa-attn-mask", "mha", "mha-need-weights", "frozen-encoder-fast-path"])
def test_attention_models_in_eval_mode_equal_the_dense_reference(make):
    model = make()
    X = torch.randn(5, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 3, (5,), generator=torch.Generator().manual_seed(4))
    before = _flags()
    H, G = HessianOperator(model, nn.CrossEntropyLoss(), (X, y)), GGNOperator(model, nn.CrossEntropyLoss(), (X, y))
    dense_H, dense_G, loss = H.to_dense(), G.to_dense(), H.loss()
    assert _flags() == before
    ref_H, ref_G = _reference(model, X, y)
    assert tm.rel_err(dense_H, ref_H) < 1e-10 and tm.rel_err(dense_G, ref_G) < 1e-10
    with torch.no_grad():
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = nn.CrossEntropyLoss()(model(X), y)
        finally:
            torch.backends.mha.set_fastpath_enabled(before[0])
    assert abs(float(loss) - float(want)) < 1e-12


def test_flags_are_restored_when_the_model_raises():
    class Boom(HFStyleAttention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not torch.backends.cuda.flash_sdp_enabled() and not torch.backends.mha.get_fastpath_enabled():
                raise RuntimeError("boom inside the call")
            return super().forward(x)

    model = Boom()
    X, y = torch.randn(3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (3,))
    before = _flags()
    H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(RuntimeError, match="boom inside the call"):
        H.gradient()
    assert _flags() == before


def test_sparse_embedding_gives_the_dense_embedding_curvature():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Embedding(6, 3, sparse=True), nn.Flatten(), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randint(0, 6, (7, 2), generator=torch.Generator().manual_seed(6)), torch.randint(0, 3, (7,))
    dense = copy.deepcopy(model)
    dense[0].sparse = False
    for cls, ref in ((HessianOperator, tm.dense_hessian), (GGNOperator, tm.dense_ggn)):
        op = cls(model, nn.CrossEntropyLoss(), (X, y))
        assert tm.rel_err(op.to_dense(), ref(dense, nn.CrossEntropyLoss(), X, y)) < 1e-10
        assert tm.rel_err(op.gradient(), HessianOperator(dense, nn.CrossEntropyLoss(), (X, y)).gradient()) < 1e-14
    assert model[0].sparse
