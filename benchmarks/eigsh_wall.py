"""Benchmark: ``specop.eigsh`` wall time against scipy's ARPACK (``scipy.sparse.linalg.eigsh``) on the same operator.

Both get one counting ``scipy.sparse.linalg.LinearOperator`` (every product counted at the operator), ``k = 6``,
``which="LA"``, ``tol = 1e-8`` (the tolerance of ``benchmarks.topk``'s comparison with ARPACK), seeds 0.. for the start
vector, specop with its multiplicity check on (``verify=True``, the default; ``check_symmetric=False``: the operator is
symmetric by construction, as ARPACK assumes). Each row is run under ``threadpoolctl`` limits of 1 and 2 BLAS threads
(the products and the host-side LAPACK work of both libraries). Matrices: a dense random symmetric ``n = 2000``
(``(G + G^T) / 2``), the 30^3 grid Laplacian (``benchmarks.problems.laplacian_3d``) and, without ``--quick``, the
digits-MLP Hessian (``benchmarks.problems.digits_mlp``, torch products through numpy). ``--quick`` uses n = 1000 and
the 15^3 Laplacian (under a minute).

    python -m benchmarks.eigsh_wall [--quick]
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

import specop
from benchmarks._common import Report, parser
from benchmarks.peers import Counting
from benchmarks.problems import laplacian_3d

K = 6
TOL = 1e-8


def digits_hessian() -> tuple[Any, int]:
    """The digits-MLP Hessian product as a numpy function (torch inside), and its size."""
    import torch

    from benchmarks.problems import digits_mlp, specop_hessian

    model, loss_fn, data = digits_mlp()
    H, _ = specop_hessian(model, loss_fn, data)

    def apply(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x))
        out = H.matvec(t) if x.ndim == 1 else H.matmat(t)
        return out.detach().numpy()

    return apply, H.shape[0]


def run(op: Counting, rounds: int) -> dict[str, tuple[float, float, np.ndarray]]:
    """Median (products, wall) and the last eigenvalues of each library, after one warm-up call each."""
    n = op.shape[0]
    calls = {
        "specop": lambda s: specop.eigsh(op, k=K, which="LA", tol=TOL, seed=s, check_symmetric=False,
                                         return_eigenvectors=False).eigenvalues,
        "scipy ARPACK": lambda s: spla.eigsh(op, k=K, which="LA", tol=TOL, return_eigenvectors=False,
                                             v0=np.random.default_rng(s).standard_normal(n)),
    }
    out = {}
    for name, call in calls.items():
        call(100)
        counts, walls = [], []
        for s in range(rounds):
            op.count = 0
            t0 = time.perf_counter()
            w = call(s)
            walls.append(time.perf_counter() - t0)
            counts.append(op.count)
        out[name] = (statistics.median(counts), statistics.median(walls), np.sort(w))
    return out


def main(argv: list[str] | None = None) -> Report:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = 3
    load0 = os.getloadavg()[0]
    report = Report("eigsh_wall", "eigsh wall time vs ARPACK (k = 6, LA)", args.quick, "cpu")
    table = report.table(f"specop.eigsh vs scipy ARPACK, k={K}, tol={TOL:g}, same counting operator",
                         ["matrix", "n", "BLAS threads", "method", "median products", "median wall s",
                          "wall / ARPACK's", "max |eigenvalue difference| / ||A||"],
                         note=f"Median of {rounds} rounds (seeds 0..) after a warm-up call; the eigenvalue "
                              "difference is between the two libraries' results (last round). On the 3-D "
                              "Laplacian (top eigenvalues triple) ARPACK misses copies and returns wrong "
                              "eigenvalues (errors about 5e-2 against the exact ones on 30^3; specop's, with its "
                              "multiplicity check, 1e-14): its wall there is not that of a correct answer.")
    nd, m = (1000, 15) if args.quick else (2000, 30)
    G = np.random.default_rng(0).standard_normal((nd, nd))
    D = (G + G.T) / 2
    L = laplacian_3d(m).tocsr()
    problems: dict[str, tuple[Any, int]] = {"dense random symmetric": (lambda X: D @ X, nd),
                                            f"3-D Laplacian {m}^3": (lambda X: L @ X, L.shape[0])}
    if not args.quick:
        problems["digits MLP Hessian"] = digits_hessian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (apply, n) in problems.items():
            for threads in (1, 2):
                with threadpool_limits(limits=threads, user_api="blas"):
                    res = run(Counting(apply, n), rounds)
                ours, arpack = res["specop"], res["scipy ARPACK"]
                scale = float(np.max(np.abs(arpack[2])))
                diff = float(np.max(np.abs(ours[2] - arpack[2]))) / scale
                for method, row in res.items():
                    table.add(name, n, threads, method, row[0], row[1], row[1] / arpack[1], diff)
                report.goal(f"{name}, {threads} BLAS thread(s): wall / ARPACK's", "<= 1.0", ours[1] / arpack[1],
                            ours[1] <= arpack[1])
                report.goal(f"{name}, {threads} BLAS thread(s): products / ARPACK's", "(reported)",
                            ours[0] / arpack[0], None)
    table.note += f" Machine load (1-min average) at the start {load0:.2f}, at the end {os.getloadavg()[0]:.2f}."
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
