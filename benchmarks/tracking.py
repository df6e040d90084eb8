"""Benchmark: tracking the top-k Hessian eigenpairs along training — cold vs warm starts vs ARPACK warm.

The `specop` command's digits MLP (P = 4,810, float64, trained 300 full-batch gradient descent
steps at lr 0.1) trains on with the same optimizer; at each of ``--checkpoints`` checkpoints,
``--every`` steps apart, the top ``k`` (k = 1 and 10) eigenpairs of one ``HessianOperator``
(reused while the model trains) are computed at tol 1e-8 by

* specop ``eigsh`` from a random start (cold, seeded by the checkpoint),
* ``specop.Tracker`` (eigsh warm-started from its previous result, ``v0=previous``: the sum of
  the previous unit eigenvectors), with and without the multiplicity check,
* scipy ARPACK (``scipy.sparse.linalg.eigsh``, same tol, default ncv) warm-started from the sum of
  its own previous eigenvectors (the same start vector as specop's warm start; for k = 1 the
  previous top eigenvector).

Totals are over the checkpoints after the first (the first is a cold start for every method).

    python -m benchmarks.tracking [--quick] [--device cuda] [--every N] [--checkpoints N]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

import specop
from benchmarks import problems
from benchmarks._common import Report, parser, setup_torch, sync
from benchmarks.peers import Counted

TOL = 1e-8
KS = (1, 10)


def run(device: Any, checkpoints: int, every: int, quick: bool = False) -> dict[int, dict[str, Any]]:
    """Per k: per method, the products, seconds and eigenvalues of every checkpoint (``quick``: a
    64-8-10 MLP, P = 610, instead of the 64-64-10 one)."""
    import torch

    from specop.cli.digits import train
    from specop.curvature.torch import HessianOperator

    model, loss_fn, data = problems.digits_mlp("float64", device, widths=(64, 8, 10) if quick else None,
                                               train_steps=300)
    H = HessianOperator(model, loss_fn, data)
    P = H.shape[0]

    def hvp_np(v: np.ndarray) -> np.ndarray:
        return H.matvec(torch.as_tensor(np.ravel(v), dtype=torch.float64, device=device)).cpu().numpy()

    trackers = {k: (specop.Tracker(H, k=k, tol=TOL, seed=0), specop.Tracker(H, k=k, tol=TOL, seed=0, verify=False))
                for k in KS}
    arpack_prev: dict[int, Any] = {}
    out: dict[int, dict[str, Any]] = {k: {m: {"matvecs": [], "seconds": [], "values": [], "converged": []}
                                          for m in ("cold", "warm", "warm_noverify", "arpack")} for k in KS}

    def record(k: int, method: str, values: Any, mv: int, dt: float, conv: bool) -> None:
        rec = out[k][method]
        rec["matvecs"].append(int(mv))
        rec["seconds"].append(dt)
        rec["values"].append(np.sort(np.asarray(values, dtype=np.float64)).tolist())
        rec["converged"].append(bool(conv))

    for c in range(checkpoints):
        if c:
            train(model, loss_fn, data, every, lr=0.1, optimizer="gd")
        for k in KS:
            sync(device)
            t0 = time.perf_counter()
            cold = specop.eigsh(H, k=k, tol=TOL, seed=c)
            sync(device)
            record(k, "cold", cold.eigenvalues, cold.matvecs, time.perf_counter() - t0, cold.converged)
            for tr, method in zip(trackers[k], ("warm", "warm_noverify"), strict=True):
                t0 = time.perf_counter()
                res = tr.update()
                sync(device)
                record(k, method, res.eigenvalues, res.matvecs, time.perf_counter() - t0, res.converged)
            counted = Counted(hvp_np)
            op = spla.LinearOperator((P, P), matvec=counted, dtype=np.float64)
            prev = arpack_prev.get(k)
            v0 = np.random.default_rng(c).standard_normal(P) if prev is None else \
                (prev / np.linalg.norm(prev, axis=0)).sum(axis=1)
            t0 = time.perf_counter()
            w, V = spla.eigsh(op, k=k, which="LA", tol=TOL, v0=v0)
            dt = time.perf_counter() - t0
            arpack_prev[k] = V
            r = np.linalg.norm(np.stack([hvp_np(V[:, i]) for i in range(k)], 1) - V * w, axis=0)
            record(k, "arpack", w, counted.calls, dt, bool(np.all(r <= 10 * TOL * np.abs(w))))
    return out


LABELS = {"cold": "specop eigsh, cold (random start)", "warm": "specop Tracker (warm, multiplicity check on)",
          "warm_noverify": "specop Tracker (warm, verify=False)", "arpack": "ARPACK warm (sum of previous vectors)"}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=None, help="training steps between checkpoints (default 2)")
    p.add_argument("--checkpoints", type=int, default=None, help="number of checkpoints (default 10)")
    args = p.parse_args(argv)
    device = setup_torch(args)
    checkpoints = args.checkpoints or (3 if args.quick else 10)
    every = args.every or 2
    report = Report("tracking", "Tracking the top-k Hessian eigenpairs over training", args.quick, str(device))
    t_all = time.perf_counter()
    out = run(device, checkpoints, every, args.quick)
    table = report.table(
        f"Digits MLP Hessian (P = {'610' if args.quick else '4,810'}), {checkpoints} checkpoints "
        f"{every} GD steps apart, tol {TOL:g}",
        ["k", "method", "products (total)", "per checkpoint", "x cold", "x ARPACK warm", "seconds (total)",
         "all converged", "max rel. diff. to cold"],
        note="Totals over checkpoints 2..N (checkpoint 1 is a cold start for every method). 'max rel. diff. to "
             "cold': largest relative difference of the eigenvalues to the cold run's at the same checkpoint. "
             "ARPACK's 'converged' is checked by true residuals <= 10 tol |w| (ARPACK's own test is on its "
             "Krylov residual estimates). One run; the seconds are on the shared 2-core machine.")
    for k in KS:
        tot = {m: sum(out[k][m]["matvecs"][1:]) for m in out[k]}
        secs = {m: sum(out[k][m]["seconds"][1:]) for m in out[k]}
        cold_vals = np.asarray(out[k]["cold"]["values"][1:])
        for m in ("cold", "warm", "warm_noverify", "arpack"):
            vals = np.asarray(out[k][m]["values"][1:])
            diff = float(np.max(np.abs(vals - cold_vals) / np.abs(cold_vals))) if vals.size else 0.0
            table.add(k, LABELS[m], tot[m], tot[m] / max(checkpoints - 1, 1), tot[m] / tot["cold"],
                      tot[m] / tot["arpack"], secs[m], all(out[k][m]["converged"]), diff)
        report.goal(f"k={k}: warm / cold products", "<= 0.5", tot["warm"] / tot["cold"],
                    tot["warm"] / tot["cold"] <= 0.5)
        report.goal(f"k={k}: warm / ARPACK warm products", "<= 1.0", tot["warm"] / tot["arpack"],
                    tot["warm"] / tot["arpack"] <= 1.0,
                    f"without the multiplicity check: {tot['warm_noverify'] / tot['arpack']:.2f}x ARPACK, "
                    f"{tot['warm_noverify'] / tot['cold']:.2f}x cold")
    per = {k: {m: out[k][m]["matvecs"] for m in out[k]} for k in KS}
    report.notes.append(f"products per checkpoint: {per}")
    report.notes.append(f"whole run {time.perf_counter() - t_all:.0f} s")
    report.finish(args.output)


if __name__ == "__main__":
    main()
