"""Bulk and outliers: the top of the Gauss-Newton and Hessian spectra of the digits MLP.

For cross-entropy with C classes the output Hessian ``diag(p) - p p^T`` has rank C - 1, and the
mean of the per-sample Jacobians gives the Gauss-Newton matrix C - 1 outliers above the bulk
(Papyan, "Traces of class/cross-class structure pervade deep learning spectra", JMLR 2020). The
script computes the top-k eigenvalues of G and H of the ``specop`` command's digits model
(64-64-10 tanh, full-batch gradient descent, lr 0.1) with ``specop.eigsh`` at initialisation and
along training, and counts the outliers at the largest relative gap ``lambda_i / lambda_{i+1}``.
Run ``python docs/examples/outliers.py [--quick]``; writes figures/outliers.png.
"""

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import specop
from specop.cli.digits import digits_problem, num_classes
from specop.cli.jobs import count_outliers
from specop.curvature.torch import GGNOperator, HessianOperator

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "outliers.png"


def main(quick: bool = False) -> dict:
    k = 12
    stages = [0, 300] if quick else [0, 100, 300, 3000]
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 4), sharey=False)
    out = {}
    for ax, steps in zip(axes, stages, strict=True):
        model, loss_fn, data = digits_problem(seed=0, train_steps=steps)
        for name, op, marker in (("G", GGNOperator, "o"), ("H", HessianOperator, "x")):
            w = specop.eigsh(op(model, loss_fn, data), k, seed=0, tol=1e-6).eigenvalues[::-1]
            n_out = count_outliers(w)
            out[(name, steps)] = n_out
            ax.semilogy(np.arange(1, k + 1), w, marker, ls="-", label=f"{name}: {n_out} outliers")
            print(f"{steps:4d} GD steps  {name}: top-{k} {np.round(w, 4)}  -> {n_out} outliers")
        ax.axvline(num_classes() - 1 + 0.5, color="gray", ls=":", label="C - 1 = 9")
        ax.set_title(f"after {steps} gradient-descent steps")
        ax.set_xlabel("index i")
        ax.legend()
    axes[0].set_ylabel(r"eigenvalue $\lambda_i$")
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
