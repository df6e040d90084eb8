"""Negative eigenvalue mass of the Hessian over training (SLQ), the share of negative curvature.

Ghorbani, Krishnan & Xiao ("An investigation into neural net optimization via Hessian eigenvalue
density", ICML 2019) estimated the Hessian spectral density with stochastic Lanczos quadrature and
found that the negative eigenvalues present at initialisation disappear early in training. The
script trains a 64-32-32-10 tanh MLP on digits by full-batch Adam (cross-entropy, learning rate
0.01) and at checkpoints estimates the mass of the density below zero the way ``specop report``
does, ``mean_r sum_i w_ri [theta_ri < 0]`` over the SLQ nodes ``theta`` and weights ``w``, and the
mass clearly below zero, ``theta < -eps * lambda_max`` with ``eps = 1e-3``.
Run ``python docs/examples/negative_mass.py [--quick]``; writes figures/negative_mass.png.
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

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "negative_mass.png"
#: Layer widths, pinned so the numbers on the docs page stay valid if the CLI's model changes.
WIDTHS = (64, 32, 32, 10)
EPS = 1e-3


def masses(d):
    """Per-probe SLQ mass below 0 and below ``-EPS * lambda_max`` -> (mean, standard error) each."""
    lmax = d.support()[1]
    out = []
    for cut in (0.0, -EPS * lmax):
        m = d.quadrature(lambda x, cut=cut: (x < cut).astype(np.float64))
        out += [float(m.mean()), float(m.std(ddof=1) / np.sqrt(m.size))]
    return out


def main(quick: bool = False) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the numbers on the docs page come from one thread
    try:
        return run(quick)
    finally:
        torch.set_num_threads(threads)


def run(quick: bool) -> dict:
    checkpoints = [0, 100] if quick else [0, 3, 10, 30, 100, 300, 1000]
    probes, steps = (4, 60) if quick else (8, 60)
    data = load_digits_tensors()
    loss_fn = torch.nn.CrossEntropyLoss()
    model = make_mlp(0, widths=WIDTHS)
    rows, densities = [], {}

    def callback(step, m):
        if step in checkpoints:
            d = specop.spectral_density(HessianOperator(m, loss_fn, data), num_probes=probes, steps=steps, seed=0)
            densities[step] = d
            rows.append((step, *masses(d)))
            s, m0, e0, m1, e1 = rows[-1]
            print(f"Adam step {s:5d}  support [{d.support()[0]:+.2e}, {d.support()[1]:.2e}]  "
                  f"mass(lambda < 0) {m0:.3f} +- {e0:.3f}   mass(lambda < -{EPS:g} lambda_max) {m1:.3f} +- {e1:.3f}")

    train(model, loss_fn, data, max(checkpoints), lr=1e-2, optimizer="adam", callback=callback)
    step, m0, e0, m1, e1 = map(np.array, zip(*rows, strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.maximum(step, 0.5)  # step 0 on the log axis
    axes[0].errorbar(x, m0, e0, fmt="o-", capsize=3, label=r"mass of $\lambda < 0$ (as in specop report)")
    axes[0].errorbar(x, m1, e1, fmt="s-", capsize=3, label=rf"mass of $\lambda < -{EPS:g}\,\lambda_{{\max}}$")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("Adam step (step 0 drawn at 0.5)")
    axes[0].set_ylabel(f"SLQ mass ({probes} probes x {steps} steps)")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("negative eigenvalue mass of H")
    axes[0].legend()
    for i, s in enumerate(sorted({checkpoints[0], checkpoints[len(checkpoints) // 2], checkpoints[-1]})):
        d = densities[s]
        lo, hi = d.support()
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 800) / abs(hi)
        d_scaled = d.evaluate(grid * abs(hi), sigma=0.01 * (hi - lo)) * abs(hi)
        axes[1].semilogy(grid, np.maximum(d_scaled, 1e-8), color=f"C{i + 2}", label=f"step {s}")
    axes[1].axvline(0, color="gray", lw=0.8)
    axes[1].set_ylim(1e-5, None)
    axes[1].set_xlabel(r"$\lambda / \lambda_{\max}$")
    axes[1].set_ylabel("density (Gaussian-smoothed SLQ)")
    axes[1].set_title("Hessian spectrum, scaled to its top eigenvalue")
    axes[1].legend()
    fig.suptitle(f"digits MLP (P = {sum(p.numel() for p in model.parameters()):,}), full-batch Adam, lr 0.01")
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    return {"step": step.tolist(), "negative_mass": m0.tolist(), "negative_mass_se": e0.tolist(),
            "clearly_negative_mass": m1.tolist(), "clearly_negative_mass_se": e1.tolist(), "eps": EPS}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
