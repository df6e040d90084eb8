"""Gradient descent happens in a tiny subspace: the gradient lies in the top Hessian eigenspace.

Gur-Ari, Roberts & Dyer ("Gradient descent happens in a tiny subspace", arXiv:1812.04754, 2018)
found that after a short initial phase of training the gradient lies almost entirely in the span of
the top-k Hessian eigenvectors, with k the number of classes, and that this subspace changes
slowly. The script trains a 64-32-32-10 tanh MLP on digits by minibatch SGD (cross-entropy, batch
64, learning rate 0.1) and at regular steps computes the top k = 10 eigenvectors ``V`` of the
full-data Hessian with ``specop.eigsh`` and the fraction ``||V^T g||^2 / ||g||^2`` of the squared
norm of the full-data gradient ``g`` in their span. A random k-dimensional subspace would hold
k / P of it on average.
Run ``python docs/examples/gradient_subspace.py [--quick]``; writes figures/gradient_subspace.png.
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
from specop.cli.digits import load_digits_tensors, make_mlp, num_classes, train
from specop.curvature.torch import HessianOperator

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "gradient_subspace.png"
#: Layer widths, pinned so the numbers on the docs page stay valid if the CLI's model changes.
WIDTHS = (64, 32, 32, 10)


def top_fraction(model, loss_fn, data, k):
    """Fraction of ``||g||^2`` (full-data gradient) in the span of the top-k Hessian eigenvectors."""
    H = HessianOperator(model, loss_fn, data)
    V = specop.eigsh(H, k, seed=0, tol=1e-6).eigenvectors
    g = H.gradient()
    return float(torch.linalg.vector_norm(V.T @ g) ** 2 / torch.linalg.vector_norm(g) ** 2), H.shape[0]


def main(quick: bool = False) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the numbers on the docs page come from one thread
    try:
        return run(quick)
    finally:
        torch.set_num_threads(threads)


def run(quick: bool) -> dict:
    k = num_classes()
    steps, every = (500, 100) if quick else (2000, 25)
    data = load_digits_tensors()
    loss_fn = torch.nn.CrossEntropyLoss()
    model = make_mlp(0, widths=WIDTHS)
    rec = []

    def callback(step, m):
        if step % every == 0:
            frac, n = top_fraction(m, loss_fn, data, k)
            with torch.no_grad():
                loss = float(loss_fn(m(data[0]), data[1]))
            rec.append((step, frac, loss, n))
            print(f"SGD step {step:5d}  loss {loss:.4f}  fraction of ||g||^2 in top-{k} eigenspace {frac:.3f}")

    train(model, loss_fn, data, steps, lr=0.1, optimizer="sgd", batch_size=64, seed=0, callback=callback)
    step, frac, loss, n = map(np.array, zip(*rec, strict=True))
    P = int(n[0])
    late = frac[step >= steps // 2]
    out = {"k": k, "P": P, "random": k / P, "step": step.tolist(), "fraction": frac.tolist(),
           "initial": float(frac[0]), "median_second_half": float(np.median(late)),
           "min_second_half": float(late.min()), "final_loss": float(loss[-1])}
    print(f"P = {P}, random k-dim subspace: k/P = {k / P:.4f}; second half of training: median fraction "
          f"{out['median_second_half']:.3f} (min {out['min_second_half']:.3f})")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(step, frac, "o-", ms=3, label=rf"top-{k} Hessian eigenvectors")
    axes[0].axhline(k / P, color="gray", ls="--", label=rf"random {k}-dim subspace: $k/P$ = {k / P:.4f}")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_xlabel("SGD step")
    axes[0].set_ylabel(r"$\|V_k^\top g\|^2 / \|g\|^2$ (full-data gradient)")
    axes[0].set_title("gradient in the top Hessian subspace")
    axes[0].legend(loc="lower right")
    axes[1].semilogy(step, loss, "o-", ms=3, color="C1")
    axes[1].set_xlabel("SGD step")
    axes[1].set_ylabel("full-data cross-entropy")
    fig.suptitle(f"digits MLP (P = {P:,}), minibatch SGD, batch 64, lr 0.1")
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
