"""SLQ vs KPM vs exact eigendecomposition on the same matrix at an equal matvec budget.

A 2,000 x 2,000 symmetric matrix with a Marchenko-Pastur bulk and five outliers (the shape of a
neural-net Hessian). SLQ (Ubaru, Chen & Saad 2017) and KPM (Weisse et al. 2006) both get
``probes x steps`` matvecs; the exact spectrum comes from ``numpy.linalg.eigvalsh``.
Run ``python docs/examples/slq_vs_kpm.py [--quick]``; writes figures/slq_vs_kpm.png.
"""

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import specop

FIG = Path(os.environ.get("SPECOP_FIGURES", Path(__file__).parent / "figures")) / "slq_vs_kpm.png"


def make_matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 2 * n)) / np.sqrt(2 * n)
    M = Z @ Z.T                                    # Marchenko-Pastur bulk on [0.09, 2.9]
    U = np.linalg.qr(rng.standard_normal((n, 5)))[0]
    return M + U @ np.diag([6.0, 8.0, 10.0, 12.0, 15.0]) @ U.T


def main(quick: bool = False) -> dict:
    n, probes, steps = (400, 4, 30) if quick else (2000, 10, 80)
    M = make_matrix(n)
    exact = np.linalg.eigvalsh(M)
    A = specop.aslinearoperator(M)
    slq = specop.spectral_density(A, method="slq", num_probes=probes, steps=steps, seed=0)
    # KPM gets two moments per matvec (Chebyshev product identities): degree 2*steps = the same budget
    kpm = specop.spectral_density(A, method="kpm", num_probes=probes, degree=2 * steps, seed=0)
    grid = np.linspace(exact[0] - 0.5, exact[-1] + 0.5, 2000)
    sigma = 0.05
    ref = np.exp(-0.5 * ((grid[:, None] - exact[None]) / sigma) ** 2).sum(1) / (n * sigma * np.sqrt(2 * np.pi))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.semilogy(grid, np.maximum(ref, 1e-8), "k", lw=2, alpha=0.4, label="exact (eigvalsh, smoothed)")
    ax.semilogy(grid, np.maximum(slq.evaluate(grid, sigma), 1e-8), label=f"SLQ ({slq.matvecs} matvecs)")
    ax.semilogy(grid, np.maximum(kpm.evaluate(grid), 1e-8), label=f"KPM ({kpm.matvecs} matvecs)")
    ax.set_ylim(1e-6, None)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(f"n = {n}: SLQ vs KPM vs exact at {probes} probes x {steps} steps")
    ax.legend()
    fig.tight_layout()
    FIG.parent.mkdir(exist_ok=True)
    fig.savefig(FIG, dpi=100)
    plt.close(fig)
    cdf_err = {name: float(np.max(np.abs(d.cdf(grid) - np.searchsorted(exact, grid, side="right") / n)))
               for name, d in (("slq", slq), ("kpm", kpm))}
    print(f"max |CDF error| vs exact: SLQ {cdf_err['slq']:.3f}, KPM {cdf_err['kpm']:.3f}")
    return {"slq_matvecs": slq.matvecs, "kpm_matvecs": kpm.matvecs, "cdf_error": cdf_err}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened run (tests)")
    main(parser.parse_args().quick)
