"""Benchmark 5: curvature of a padded causal LM, and the price of the Hessian cache's check.

* Masked LM: a causal transformer LM with tied embeddings (``--quick``: smaller) on one batch of
  padded token sequences, ``labels = -100`` at the padding, mean cross-entropy over the real
  tokens, described to specop with the ``forward`` / ``output`` / ``targets`` hooks. Median time
  of one Hessian-vector product (gradient graph cached) and one GGN product, each divided by an
  eager autograd gradient of the same loss timed just before it (paired, so that machine load
  drifting during the run cancels). The gradient is the one a user would compute: default
  attention kernels; specop's products run on the math kernel (they need double backward).
* Cache check: before every cached product ``HessianOperator`` verifies that no parameter, buffer
  or data tensor changed (identity, version counter, and the values compared with a copy). Its
  time beside the time of the cached product on the digits MLP (P = 4,810, float64).

    python -m benchmarks.curvature [--quick] [--device cuda] [--threads N]
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks import problems
from benchmarks._common import Report, median_time, paired, parser, setup_torch, sync


def lm_problem(device: Any, quick: bool) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """``(model, loss_fn, batch, hooks)``: the padded-LM problem on ``device``."""
    import torch

    vocab, T, d, layers, n = (32, 8, 16, 1, 16) if quick else (256, 32, 64, 2, 64)

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, d)
            self.pos = torch.nn.Parameter(0.02 * torch.randn(T, d))
            layer = torch.nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
            self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(d)

        def forward(self, ids: Any, mask: Any) -> Any:
            causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).triu(1)
            h = self.blocks(self.emb(ids) + self.pos[: ids.shape[1]], mask=causal, is_causal=True,
                            src_key_padding_mask=mask == 0)
            return {"logits": self.norm(h) @ self.emb.weight.T}

    torch.manual_seed(0)
    model = LM().double().to(device)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(T // 4, T + 1, (n,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, vocab, (n, T), generator=g) * mask
    labels = torch.roll(ids, -1, dims=1).masked_fill(torch.roll(mask, -1, dims=1) == 0, -100)
    labels[:, -1] = -100
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
    hooks = {"forward": lambda m, b: m(b["input_ids"], b["attention_mask"]),
             "output": lambda out: out["logits"].transpose(1, 2), "targets": lambda b: b["labels"]}
    return model, torch.nn.CrossEntropyLoss(), batch, hooks


def masked_lm(report: Report, device: Any, quick: bool) -> float:
    import torch

    from specop.curvature.torch import GGNOperator, HessianOperator

    model, loss_fn, batch, hooks = lm_problem(device, quick)
    params = [p for p in model.parameters() if p.requires_grad]

    def grad() -> Any:
        out = hooks["output"](hooks["forward"](model, batch))
        return torch.autograd.grad(loss_fn(out, batch["labels"]), params)

    H = HessianOperator(model, loss_fn, batch, **hooks)
    G = GGNOperator(model, loss_fn, batch, **hooks)
    v = torch.randn(H.shape[0], dtype=torch.float64, device=device, generator=torch.Generator(device).manual_seed(0))
    repeats = 3 if quick else 15
    tokens = int((batch["labels"] != -100).sum())
    t = report.table("Padded causal LM: one product ÷ one gradient (median of paired ratios)",
                     ["model", "P", "tokens (of B x T)", "call", "ms", "÷ autograd gradient"],
                     note="One in-memory batch; `labels = -100` at the padding; mean over the real tokens. The "
                          "Hessian product reuses the cached gradient graph (one backward pass); the GGN product "
                          "is a forward and three reverse passes.")
    name = "LM " + ("1x16, V=32, T=8" if quick else "2x64, V=256, T=32")
    shape = f"{tokens} (of {batch['labels'].numel()})"
    tg, _ = paired(grad, grad, repeats, device)
    t.add(name, H.shape[0], shape, "autograd gradient (reference)", 1e3 * tg, 1.0)
    th, rh = paired(lambda: H @ v, grad, repeats, device)
    t.add(name, H.shape[0], shape, "specop HessianOperator matvec", 1e3 * th, rh)
    tG, rG = paired(lambda: G @ v, grad, max(3, repeats // 3), device)
    t.add(name, H.shape[0], shape, "specop GGNOperator matvec", 1e3 * tG, rG)
    tgs, rgs = paired(H.gradient, grad, max(3, repeats // 3), device)
    t.add(name, H.shape[0], shape, "specop gradient()", 1e3 * tgs, rgs)
    report.goal(f"masked-LM HVP/grad ≤ 2.5 ({name}, P = {H.shape[0]:,})", "≤ 2.5", rh, rh <= 2.5)
    return rh


def cache_check(report: Report, device: Any, quick: bool) -> float:
    import torch

    model, loss_fn, data = problems.digits_mlp("float64", device, train_steps=10 if quick else 300)
    from specop.curvature.torch import HessianOperator

    H = HessianOperator(model, loss_fn, data)
    v = torch.randn(H.shape[0], dtype=torch.float64, device=device, generator=torch.Generator(device).manual_seed(0))
    H @ v
    graph, source = H._graphs[0], H._one_batch()
    repeats = 20 if quick else 200
    rows = []
    for _ in range(3):  # interleaved rounds: both figures under the same load
        check = median_time(lambda: H._valid(graph, source), repeats=repeats)
        product = median_time(lambda: (H @ v, sync(device)), repeats=max(5, repeats // 4))
        rows.append((check, product))
    check, product = (statistics.median(r[i] for r in rows) for i in (0, 1))
    assert H._graphs[0] is graph  # the cache held throughout
    t = report.table("Hessian cache check on the digits MLP (P = 4,810, float64, 1,797 samples)",
                     ["what", "µs", "share of a cached product"],
                     note="The check runs before every cached product: every parameter and buffer compared by "
                          "identity, version counter and value (torch.equal with the copy taken when the graph "
                          "was built), the batch's tensors by identity, version and shape.")
    t.add("cached Hessian-vector product (check included)", 1e6 * product, 1.0)
    t.add("cache check alone", 1e6 * check, check / product)
    share = check / product
    report.goal("cache check < 2% of a cached product (digits MLP)", "< 0.02", share, share < 0.02)
    return share


def main(argv: list[str] | None = None) -> Report:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device = setup_torch(args)
    report = Report("curvature", "Curvature of models with masks: the padded LM, and the cache check",
                    args.quick, str(device))
    import os

    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    masked_lm(report, device, args.quick)
    cache_check(report, device, args.quick)
    report.notes.append(f"torch threads: {torch.get_num_threads()}; 1-minute load average at the start: {load:.1f} "
                        f"on {os.cpu_count()} cores (other work shares the machine; ratios are paired, the check "
                        "and the product interleaved).")
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
