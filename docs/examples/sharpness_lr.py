"""Edge of stability: full-batch gradient descent drives the sharpness to 2 / learning rate.

Cohen, Kaur, Li, Kolter & Talwalkar ("Gradient descent on neural networks typically occurs at the
edge of stability", ICLR 2021) observed that under full-batch gradient descent with step size eta
the largest Hessian eigenvalue (the *sharpness*) first rises ("progressive sharpening") until it
reaches the stability threshold 2 / eta of the quadratic model, and then hovers there while the
loss keeps decreasing non-monotonically. The script trains a 64-32-32-10 tanh MLP on digits by
full-batch GD on the square loss ``0.5 * ||f(x) - onehot(y)||^2`` (mean over samples) for a few
step sizes and tracks the sharpness with ``specop.eigsh(HessianOperator(...), k=1)``.
Run ``python docs/examples/sharpness_lr.py [--quick]``; writes figures/sharpness_lr.png.
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
from specop.curvature.torch import HessianOperator

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "sharpness_lr.png"
#: Layer widths, pinned so the numbers on the docs page stay valid if the CLI's model changes.
WIDTHS = (64, 32, 32, 10)


def square_loss(outputs, targets):
    """``0.5 * ||outputs - targets||^2`` summed over classes, averaged over samples (Cohen et al.)."""
    return 0.5 * ((outputs - targets) ** 2).sum(dim=1).mean()


def sharpness(model, data):
    """Largest Hessian eigenvalue of the full-batch square loss."""
    H = HessianOperator(model, square_loss, data)
    return float(specop.eigsh(H, 1, seed=0, tol=1e-4, return_eigenvectors=False).eigenvalues[0])


def main(quick: bool = False) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the numbers on the docs page come from one thread
    try:
        return run(quick)
    finally:
        torch.set_num_threads(threads)


def run(quick: bool) -> dict:
    lrs = [0.2] if quick else [0.1, 0.15, 0.2]
    steps, every = (500, 50) if quick else (2000, 25)
    data = load_digits_tensors(one_hot=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    out = {"lr": lrs, "steps": steps, "initial": [], "final": [], "ratio": [], "loss": []}
    for i, lr in enumerate(lrs):
        model = make_mlp(0, widths=WIDTHS)
        rec, losses = [], []

        def callback(step, m, rec=rec, losses=losses):
            with torch.no_grad():
                losses.append(float(square_loss(m(data[0]), data[1])))
            if step % every == 0:
                rec.append((step, sharpness(m, data)))

        train(model, square_loss, data, steps, lr=lr, optimizer="gd", callback=callback)
        step, lam = map(np.array, zip(*rec, strict=True))
        # the sharpness oscillates around 2 / eta at the edge of stability: average the last quarter
        final = float(np.mean(lam[step >= 0.75 * steps]))
        out["initial"].append(float(lam[0]))
        out["final"].append(final)
        out["ratio"].append(final / (2 / lr))
        out["loss"].append(losses[-1])
        print(f"eta {lr:5.2f}  2/eta {2 / lr:6.2f}  sharpness: start {lam[0]:6.2f}  max {lam.max():6.2f}  "
              f"last quarter {final:6.2f} = {final / (2 / lr):.3f} x 2/eta   final loss {losses[-1]:.4f}")
        color = f"C{i}"
        axes[0].plot(step, lam, "-", color=color, label=rf"$\eta$ = {lr}")
        axes[0].axhline(2 / lr, color=color, ls="--", lw=1)
        axes[1].semilogy(np.arange(len(losses)), losses, "-", color=color, label=rf"$\eta$ = {lr}")
    axes[0].set_xlabel("gradient descent step")
    axes[0].set_ylabel(r"sharpness $\lambda_{\max}(H)$  (dashed: $2/\eta$)")
    axes[0].set_title("progressive sharpening, then the edge of stability")
    axes[0].legend()
    axes[1].set_xlabel("gradient descent step")
    axes[1].set_ylabel("training loss (square, one-hot)")
    axes[1].legend()
    fig.suptitle("digits MLP, full-batch gradient descent")
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
