"""Benchmark: partial SVD — specop ``svds`` against scipy's ``svds`` (ARPACK and PROPACK).

Three matrices, ``k = 10`` largest singular triplets, the same ``tol`` for every library
(scipy passes ``tol**2`` to ARPACK's eigsh on ``A^T A`` and to PROPACK; specop's ``tol`` is a
relative residual bound on each triplet):

* a random sparse 2000 x 1000 matrix (density 1%, ``scipy.sparse.random``, seed 0);
* a dense 2000 x 500 low-rank-plus-noise matrix (rank 20, singular values 10..1, plus
  Gaussian noise of norm about 0.2);
* the Jacobian of the digits MLP's outputs (``specop.cli.digits``, all 1,797 samples,
  10 logits each) with respect to its 4,810 parameters: a 17,970 x 4,810
  ``FunctionOperator`` with ``matvec`` by ``torch.func.jvp`` and ``rmatvec`` by ``torch.func.vjp``
  (specop runs on torch; scipy gets the same operator through ``to_scipy()``).

Products (``A`` and ``A^T`` together, counted at the operator), median wall time over
rounds, and the largest relative error of the 10 values against the reference (dense SVD
for the first two; for the Jacobian ARPACK at ``tol = 1e-14``, checked against specop at
``tol = 1e-14``).

    python -m benchmarks.svds [--quick]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as spla

import specop
from benchmarks._common import Report, parser, setup_torch

K = 10


class Counter:
    """Wraps ``matvec``/``rmatvec`` functions and counts the products."""

    def __init__(self, mv: Any, rmv: Any) -> None:
        self.mv, self.rmv, self.count = mv, rmv, 0

    def matvec(self, x: Any) -> Any:
        self.count += 1
        return self.mv(x)

    def rmatvec(self, x: Any) -> Any:
        self.count += 1
        return self.rmv(x)


def scipy_operator(counter: Counter, shape: tuple[int, int]) -> spla.LinearOperator:
    return spla.LinearOperator(shape, matvec=counter.matvec, rmatvec=counter.rmatvec, dtype=np.float64)


def sparse_matrix(quick: bool) -> Any:
    m, n = (400, 200) if quick else (2000, 1000)
    return scipy.sparse.random(m, n, density=0.01 if not quick else 0.05, random_state=0, format="csr")


def lowrank_matrix(quick: bool) -> np.ndarray:
    m, n, r = (400, 100, 10) if quick else (2000, 500, 20)
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return (U * np.linspace(10, 1, r)) @ V.T + 0.2 * rng.standard_normal((m, n)) / np.sqrt(m)


def jacobian_operator(device: Any, quick: bool) -> tuple[Any, Counter]:
    """The digits MLP's output Jacobian as a torch FunctionOperator (and a counter of its products)."""
    import torch
    from torch.func import functional_call, jvp, vjp

    from specop.cli.digits import digits_problem

    model, _, (X, _) = digits_problem(seed=0, train_steps=20 if quick else 300, device=device)
    if quick:
        X = X[:200]
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    sizes = [p.numel() for p in params]
    shapes = [p.shape for p in params]

    def unflat(v: Any) -> tuple:
        return tuple(c.reshape(s) for c, s in zip(torch.split(v, sizes), shapes, strict=True))

    def f(*ps: Any) -> Any:
        return functional_call(model, dict(zip(names, ps, strict=True)), (X,)).reshape(-1)

    def mv(v: Any) -> Any:
        return jvp(f, tuple(params), unflat(v))[1]

    def rmv(u: Any) -> Any:
        _, pull = vjp(f, *params)
        return torch.cat([g.reshape(-1) for g in pull(u)])

    counter = Counter(mv, rmv)
    m, n = X.shape[0] * 10, sum(sizes)
    op = specop.FunctionOperator(counter.matvec, (m, n), like=params[0], rmatvec=counter.rmatvec)
    return op, counter


def rel_error(found: np.ndarray, ref: np.ndarray) -> float:
    f = np.sort(np.asarray(found, dtype=np.float64))[::-1][:K]
    return float(np.max(np.abs(f - ref[:K]) / ref[:K]))


def run_methods(report_rows: Any, name: str, shape: tuple[int, int], specop_op: Any, specop_counter: Counter,
                scipy_counter: Counter, ref: np.ndarray, tol: float, rounds: int) -> dict[str, tuple]:
    """Every method ``rounds`` times (after a warm-up), seeds 0..rounds-1; rows added to the table."""
    L = scipy_operator(scipy_counter, shape)
    methods = {
        "specop svds": lambda s: specop.svds(specop_op, k=K, tol=tol, seed=s),
        "specop svds verify=False": lambda s: specop.svds(specop_op, k=K, tol=tol, seed=s, verify=False),
        "scipy svds ARPACK": lambda s: spla.svds(L, k=K, tol=tol, rng=s),
        "scipy svds PROPACK": lambda s: spla.svds(L, k=K, tol=tol, rng=s, solver="propack", maxiter=2000),
    }
    out = {}
    for method, fn in methods.items():
        counter = specop_counter if method.startswith("specop") else scipy_counter
        fn(0)  # warm-up
        walls, counts, errs = [], [], []
        for s in range(rounds):
            counter.count = 0
            t0 = time.perf_counter()
            res = fn(s)
            walls.append(time.perf_counter() - t0)
            counts.append(counter.count)
            vals = res.singular_values if method.startswith("specop") else res[1]
            errs.append(rel_error(vals, ref))
        row = (statistics.median(counts), max(errs), statistics.median(walls))
        out[method] = row
        report_rows.add(name, f"{shape[0]}x{shape[1]}", method, *row)
    return out


def main(argv: list[str] | None = None) -> Report:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device = setup_torch(args)
    tol = 1e-8
    rounds = 2 if args.quick else 5
    report = Report("svds", "Partial SVD (k = 10 largest)", args.quick, str(device))
    table = report.table(f"svds, k={K}, tol={tol:g} for every library",
                         ["matrix", "shape", "method", "median products", "max rel. error", "median wall s"],
                         note=f"Products: A and A^T together, counted at the operator. Wall: median of {rounds} "
                              "rounds (seeds 0..) after a warm-up. Error: largest relative error of the 10 values "
                              "against the reference, the worst round.")
    results = {}
    S = sparse_matrix(args.quick)
    ref = np.linalg.svd(S.toarray(), compute_uv=False)
    c_sp, c_sc = Counter(lambda x: S @ x, lambda x: S.T @ x), Counter(lambda x: S @ x, lambda x: S.T @ x)
    op = specop.FunctionOperator(c_sp.matvec, S.shape, rmatvec=c_sp.rmatvec)
    results["sparse"] = run_methods(table, "random sparse", S.shape, op, c_sp, c_sc, ref, tol, rounds)
    D = lowrank_matrix(args.quick)
    ref = np.linalg.svd(D, compute_uv=False)
    c_sp, c_sc = Counter(lambda x: D @ x, lambda x: D.T @ x), Counter(lambda x: D @ x, lambda x: D.T @ x)
    op = specop.FunctionOperator(c_sp.matvec, D.shape, rmatvec=c_sp.rmatvec)
    results["lowrank"] = run_methods(table, "low rank + noise", D.shape, op, c_sp, c_sc, ref, tol, rounds)
    J, c_j = jacobian_operator(device, args.quick)
    view = J.to_scipy()
    c_s = Counter(view.matvec, view.rmatvec)
    ref = spla.svds(scipy_operator(Counter(view.matvec, view.rmatvec), J.shape), k=K, tol=1e-14, rng=0)[1][::-1]
    check = specop.svds(J, k=K, tol=1e-14, seed=0).singular_values[::-1]
    report.notes.append(f"Jacobian reference: ARPACK at tol=1e-14; specop at tol=1e-14 agrees to "
                        f"{float(np.max(np.abs(check - ref) / ref)):.1e} (relative).")
    results["jacobian"] = run_methods(table, "digits MLP Jacobian (torch)", J.shape, J, c_j, c_s, ref, tol, rounds)
    for name, res in results.items():
        ours, arpack = res["specop svds"], res["scipy svds ARPACK"]
        report.goal(f"{name}: products / ARPACK's", "<= 1", ours[0] / arpack[0], ours[0] <= arpack[0])
        report.goal(f"{name}: wall / ARPACK's", "<= 1.0", ours[2] / arpack[2], ours[2] <= arpack[2])
        correct = arpack[1] > 1e-6 or ours[1] <= max(1e-6, 10 * arpack[1])
        report.goal(f"{name}: no wrong answer where ARPACK gives one", "max rel. error <= 1e-6", ours[1], correct)
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
