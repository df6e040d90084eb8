"""Hessian vs Gauss-Newton over training on the digits MLP; negative eigenvalue mass.

Trains a 64-32-32-10 tanh MLP on digits (P = 3,466, full-batch Adam, lr 0.01) and at several
points measures ``||H - G||_2 / ||H||_2`` (Papyan, JMLR 2020: the residual ``H - G`` shrinks as the
fit improves), the smallest Ritz value of ``G`` (``G`` is PSD for cross-entropy) and the SLQ
negative-eigenvalue weight of ``H``, ``sum_{lambda<0} |lambda| / sum |lambda|`` (Ghorbani et al.,
ICML 2019: negative curvature disappears early in training).
Run ``python docs/examples/hessian_vs_ggn.py [--quick]``; writes figures/hessian_vs_ggn.png.
"""

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import specop
from specop.cli.digits import load_digits_tensors, make_mlp, train
from specop.curvature.torch import GGNOperator, HessianOperator

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "hessian_vs_ggn.png"


def measure(model, loss_fn, data, probes, steps):
    H, G = HessianOperator(model, loss_fn, data), GGNOperator(model, loss_fn, data)
    top_h = specop.eigsh(H, 1, which="LM", seed=0, tol=1e-6).eigenvalues[0]
    res = specop.eigsh(H - G, 1, which="LM", seed=0, tol=1e-6).eigenvalues[0]
    d = specop.spectral_density(H, num_probes=probes, steps=steps, seed=0)
    g_min = specop.spectral_density(G, num_probes=1, steps=steps, seed=0).support()[0]  # smallest Ritz value
    neg = d.quadrature(lambda x: np.abs(x) * (x < 0)).mean() / d.quadrature(np.abs).mean()
    return abs(res) / abs(top_h), g_min / abs(top_h), neg


def main(quick: bool = False) -> dict:
    checkpoints = [0, 5] if quick else [0, 10, 30, 100]
    probes, steps = (1, 15) if quick else (4, 60)
    data = load_digits_tensors()
    loss_fn = torch.nn.CrossEntropyLoss()
    model = make_mlp(0, widths=(64, 32, 32, 10))
    rows = []

    def callback(step, m):
        if step in checkpoints:
            rows.append((step, *measure(m, loss_fn, data, probes, steps)))
            s, r, g, n = rows[-1]
            print(f"step {s:4d}  ||H-G||/||H|| {r:.3f}  lambda_min(G)/||H|| {g:.1e}  negative weight {n:.3f}")

    train(model, loss_fn, data, max(checkpoints), lr=1e-2, callback=callback)
    step, ratio, gmin, neg = map(np.array, zip(*rows, strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(step, ratio, "o-", label=r"$\|H-G\|_2/\|H\|_2$")
    axes[0].plot(step, gmin, "s-", label=r"$\lambda_{\min}(G)/\|H\|_2$ (PSD: $\geq 0$)")
    axes[0].set_xlabel("Adam step")
    axes[0].legend()
    axes[1].plot(step, neg, "o-", color="C3")
    axes[1].set_xlabel("Adam step")
    axes[1].set_ylabel(r"$\sum_{\lambda<0}|\lambda| / \sum|\lambda|$ of $H$ (SLQ)")
    axes[1].set_title("negative eigenvalue weight")
    fig.suptitle("digits MLP: Hessian vs Gauss-Newton over training")
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    return {"step": step.tolist(), "ratio": ratio.tolist(), "g_min": gmin.tolist(), "negative_weight": neg.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
