"""Benchmark: ``specop.sparse.linalg.eigsh`` against scipy's ARPACK in regular and shift-invert modes.

Both libraries get the same problem through the same interface (``scipy.sparse.linalg.eigsh``'s
signature), ``k = 6``, ``tol = 1e-8``, seeds 0.. for the start vector:

* ``LA`` and ``SM`` (regular mode): ``A`` as a counting ``scipy.sparse.linalg.LinearOperator``, so
  every product with ``A`` is counted, for both;
* ``sigma`` (mode "normal"): both get the same ``OPinv = (A - sigma I)^{-1}``, one sparse LU
  (``splu``) made once outside the timed calls, as a counting operator, and ``A`` as a counting
  operator too: "products" counts the applications of ``OPinv``, "A products" the products with ``A``
  (specop checks each returned pair against ``A`` itself and estimates ``||A||``: 20 + k + 2).
  A last row gives specop's own path (``eigsh(A_sparse, sigma=...)``, its own ``splu``; wall only).
* generalized, ``M`` an operator: 1-D FEM stiffness ``A`` and mass ``M``, ``LA``, both libraries given
  the same counting ``A``, ``M`` and ``Minv`` (``splu`` of ``M``); products count all three.

Matrices: scipy's test_arpack-style random symmetric sparse matrix (``n = 1000``, 0.5% density,
plus a random diagonal in ``[-1, 1]``, indefinite; ``sigma = 0.01``), the 1-D Laplacian
(``n = 400``, scipy's standard Poisson test matrix; ``sigma = 1.05``; ``SM`` on ``n = 150``) and the
3-D Laplacian (``benchmarks.problems.laplacian_3d``, ``12^3 = 1728``, ``sigma = 0.5`` near the
bottom; exact eigenvalues known). The error column is the largest error of the six eigenvalues
against the reference (exact or dense ``eigh``), relative to ``||A||``, worst round.

    python -m benchmarks.eigsh_modes [--quick]
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

import specop.sparse.linalg as ssl
from benchmarks._common import Report, parser
from benchmarks.peers import Counting
from benchmarks.problems import laplacian_3d, laplacian_3d_eigenvalues

K = 6
TOL = 1e-8


def random_symmetric(n: int) -> scipy.sparse.csr_array:
    """(S + S^T) / 2 for a random sparse S (0.5% density) plus a random diagonal in [-1, 1] (no null space)."""
    S = scipy.sparse.random(n, n, density=0.005, random_state=0, format="csr")
    d = np.random.default_rng(0).uniform(-1.0, 1.0, n)
    return scipy.sparse.csr_array((S + S.T) / 2 + scipy.sparse.diags(d))


def laplacian_1d(n: int) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(scipy.sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)))


def wanted(w: np.ndarray, which: str, sigma: float | None) -> np.ndarray:
    if sigma is not None:
        return np.sort(w[np.argsort(np.abs(w - sigma))[:K]])
    if which == "LA":
        return np.sort(w)[-K:]
    return np.sort(w[np.argsort(np.abs(w))[:K]])


def run_case(table: Any, name: str, A: Any, exact: np.ndarray, which: str, sigma: float | None,
             rounds: int) -> dict[str, tuple]:
    n = A.shape[0]
    scale = float(np.abs(exact).max())
    ref = wanted(exact, which, sigma)
    A_count = Counting(lambda X: A @ X, n)
    op_count = None
    if sigma is not None:
        lu = spla.splu(scipy.sparse.csc_array(A - sigma * scipy.sparse.identity(n)))
        op_count = Counting(lu.solve, n)
    kw: dict[str, Any] = dict(k=K, which="LM" if sigma is not None else which, tol=TOL)
    if sigma is not None:
        kw.update(sigma=sigma, OPinv=op_count)
    methods = {"specop": ssl.eigsh, "scipy ARPACK": spla.eigsh}
    out = {}
    for method, f in methods.items():
        f(A_count, **kw, rng=np.random.default_rng(100))  # warm-up
        walls, counts, acounts, errs = [], [], [], []
        for s in range(rounds):
            A_count.count = 0
            if op_count is not None:
                op_count.count = 0
            t0 = time.perf_counter()
            w = f(A_count, **kw, rng=np.random.default_rng(s))[0]
            walls.append(time.perf_counter() - t0)
            acounts.append(A_count.count)
            counts.append(A_count.count if op_count is None else op_count.count)
            errs.append(float(np.max(np.abs(np.sort(w) - ref))) / scale)
        row = (statistics.median(counts), statistics.median(acounts), max(errs), statistics.median(walls))
        out[method] = row
        mode = which if sigma is None else f"sigma={sigma:g}"
        table.add(name, n, mode, method, *row)
    if sigma is not None:  # specop's own factorization (splu inside eigsh): wall only
        walls = []
        for s in range(rounds):
            t0 = time.perf_counter()
            w = ssl.eigsh(A, K, sigma=sigma, tol=TOL, rng=np.random.default_rng(s))[0]
            walls.append(time.perf_counter() - t0)
        err = float(np.max(np.abs(np.sort(w) - ref))) / scale
        table.add(name, n, f"sigma={sigma:g}", "specop, own splu (incl. factorization)", None, None, err,
                  statistics.median(walls))
    return out


def run_generalized(table: Any, n: int, rounds: int) -> dict[str, tuple]:
    """A x = lambda M x, 1-D FEM stiffness A and mass M = tridiag(1, 4, 1) / 6, M an operator.

    Both libraries get the same counting operators ``A``, ``M`` and ``Minv`` (one ``splu`` of M);
    "products" counts all three (specop's include its residual check and norm estimates).
    """
    A = laplacian_1d(n)
    Ms = scipy.sparse.csc_array(scipy.sparse.diags([1.0, 4.0, 1.0], [-1, 0, 1], shape=(n, n)) / 6)
    exact = scipy.linalg.eigh(A.toarray(), Ms.toarray(), eigvals_only=True)
    ref, scale = np.sort(exact)[-K:], float(np.abs(exact).max())
    lu = spla.splu(Ms)
    ops = [Counting(lambda X: A @ X, n), Counting(lambda X: Ms @ X, n), Counting(lu.solve, n)]
    out = {}
    for method, f in {"specop": ssl.eigsh, "scipy ARPACK": spla.eigsh}.items():
        f(ops[0], K, M=ops[1], Minv=ops[2], which="LA", tol=TOL, rng=np.random.default_rng(100))
        walls, counts, errs = [], [], []
        for s in range(rounds):
            for c in ops:
                c.count = 0
            t0 = time.perf_counter()
            w = f(ops[0], K, M=ops[1], Minv=ops[2], which="LA", tol=TOL, rng=np.random.default_rng(s))[0]
            walls.append(time.perf_counter() - t0)
            counts.append(sum(c.count for c in ops))
            errs.append(float(np.max(np.abs(np.sort(w) - ref))) / scale)
        row = (statistics.median(counts), None, max(errs), statistics.median(walls))
        out[method] = row
        table.add("1-D FEM A, operator M (Minv)", n, "LA, M x", method, *row)
    return out


def main(argv: list[str] | None = None) -> Report:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = 2  # the sizes and rounds keep one run within minutes on the shared 2-core machine
    report = Report("eigsh_modes", "eigsh modes: LA, SM, shift-invert (k = 6)", args.quick, "cpu")
    table = report.table(f"specop.sparse.linalg.eigsh vs scipy ARPACK, k={K}, tol={TOL:g}",
                         ["matrix", "n", "mode", "method", "median products", "median A products",
                          "max error / ||A||", "median wall s"],
                         note=f"Products: with A (LA, SM) or with OPinv (sigma), counted at the operator; "
                              f"wall: median of {rounds} rounds (seeds 0..) after a warm-up.")
    m3 = 8 if args.quick else 12
    n1, nr, ns = (200, 300, 100) if args.quick else (400, 1000, 150)
    R = random_symmetric(nr)

    def lap1(n: int) -> np.ndarray:
        return 2 - 2 * np.cos(np.arange(1, n + 1) * np.pi / (n + 1))

    # (matrix, exact eigenvalues, [(which, sigma), ...]); regular-mode SM only where it converges in
    # seconds (on the random matrix, with its cluster at 0, neither library converges in 10^4 products)
    problems = {
        "random sparse symmetric": (R, np.linalg.eigvalsh(R.toarray()), [("LA", None), ("LM", 0.01)]),
        "1-D Laplacian": (laplacian_1d(n1), lap1(n1), [("LA", None), ("LM", 1.05)]),
        "1-D Laplacian (small)": (laplacian_1d(ns), lap1(ns), [("SM", None)]),
        "3-D Laplacian": (scipy.sparse.csr_array(laplacian_3d(m3)), laplacian_3d_eigenvalues(m3),
                          [("LA", None), ("LM", 0.5)]),
    }
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (A, exact, cases) in problems.items():
            for which, sig in cases:
                key = f"{name} {which if sig is None else f'sigma={sig:g}'}"
                results[key] = run_case(table, name, A, exact, which, sig, rounds)
        results["1-D FEM operator M LA"] = run_generalized(table, n1, rounds)
    for key, res in results.items():
        ours, arpack = res["specop"], res["scipy ARPACK"]
        report.goal(f"{key}: products / ARPACK's", "<= 1", ours[0] / arpack[0], ours[0] <= arpack[0])
        report.goal(f"{key}: wall / ARPACK's", "<= 1.0", ours[3] / arpack[3], ours[3] <= arpack[3])
        correct = arpack[2] > 1e-6 or ours[2] <= max(1e-6, 10 * arpack[2])
        report.goal(f"{key}: no wrong answer where ARPACK gives one", "max error / ||A|| <= 1e-6", ours[2], correct)
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
