"""Benchmark: first and later calls of eigsh, spectral_density and trace on a JAX operator, against numpy.

Each row is one operation on ``specop.aslinearoperator(jnp.asarray(D))`` for a dense random symmetric
``D = (G + G^T) / 2`` (float64, JAX's x64 on): ``eigsh`` (``k = 6``, ``which="LA"``),
``spectral_density`` SLQ and KPM (default arguments), ``trace`` (Hutchinson and Hutch++, default
arguments). The *first call* runs in a fresh subprocess (JAX imported and the operator built before the
clock starts; the call's compiles are included); the second and third calls follow in the same process
(the later figure is the smaller of the two), and numpy's wall is the median of 3 calls on the same
matrix after a warm-up call. The compile count is the number of XLA programs the call compiled
(``specop.backends.compile_count``). Goals (issue #18): a first call within 1.5 s, later calls
within 1.3x numpy's wall. ``--quick``: n = 120 only.

    OMP_NUM_THREADS=1 python -m benchmarks.jax_calls [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Report, parser

SIZES = (120, 500, 2000)
ROOT = Path(__file__).resolve().parent.parent
OPERATIONS: dict[str, Callable[[Any], Any]] = {
    "eigsh k=6 LA": lambda A: __import__("specop").eigsh(A, k=6, which="LA", seed=0),
    "spectral_density SLQ": lambda A: __import__("specop").spectral_density(A, seed=0),
    "spectral_density KPM": lambda A: __import__("specop").spectral_density(A, method="kpm", seed=0),
    "trace Hutchinson": lambda A: __import__("specop").trace(A, seed=0),
    "trace Hutch++": lambda A: __import__("specop").trace(A, method="hutch++", seed=0),
}


def matrix(n: int) -> Any:
    """The dense random symmetric test matrix of size ``n`` (numpy, float64)."""
    import numpy as np

    G = np.random.default_rng(n).standard_normal((n, n))
    return (G + G.T) / 2


def worker(op: str, n: int) -> dict[str, Any]:
    """In this (fresh) process: first, second and third call on JAX, numpy's median wall, compiles."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import specop
    from specop import backends

    call = OPERATIONS[op]
    D = matrix(n)
    A = specop.aslinearoperator(jnp.asarray(D))
    backends.compile_count()  # starts the count
    walls, compiles = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            c0 = backends.compile_count()
            t0 = time.perf_counter()
            call(A)
            walls.append(time.perf_counter() - t0)
            compiles.append(backends.compile_count() - c0)
        An = specop.aslinearoperator(D)
        call(An)
        ref = []
        for _ in range(3):
            t0 = time.perf_counter()
            call(An)
            ref.append(time.perf_counter() - t0)
    return {"first": walls[0], "later": min(walls[1:]), "numpy": statistics.median(ref),
            "compiles_first": compiles[0], "compiles_later": max(compiles[1:])}


def measure(op: str, n: int) -> dict[str, Any]:
    """:func:`worker` in a fresh Python process (the first call then compiles everything it needs)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.jax_calls", "--worker", op, str(n)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, metavar=("OPERATION", "N"), help=None)
    p.add_argument("--ops", default=None, help="comma-separated subset of the operations")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        raise SystemExit(0)
    load0 = os.getloadavg()[0]
    report = Report("jax_calls", "JAX calls: first call (compile included) and later calls vs numpy",
                    args.quick, "cpu")
    table = report.table("specop on a JAX operator vs the same call on numpy, dense random symmetric float64",
                         ["operation", "n", "first call s", "compiles (first)", "later call s",
                          "compiles (later)", "numpy s", "later / numpy"],
                         note="First call in a fresh process (JAX imported, operator built before the clock); "
                              "later: the faster of the 2nd and 3rd calls in that process; numpy: median of 3 "
                              "after a warm-up.")
    ops = list(OPERATIONS) if args.ops is None else args.ops.split(",")
    for op in ops:
        for n in (SIZES[:1] if args.quick else SIZES):
            r = measure(op, n)
            ratio = r["later"] / r["numpy"]
            table.add(op, n, r["first"], r["compiles_first"], r["later"], r["compiles_later"], r["numpy"], ratio)
            report.goal(f"{op}, n={n}: first call s", "<= 1.5", r["first"], r["first"] <= 1.5)
            report.goal(f"{op}, n={n}: later / numpy", "<= 1.3", ratio, ratio <= 1.3)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    table.note += (f" OMP_NUM_THREADS={threads}. Machine load (1-min average) at the start {load0:.2f}, "
                   f"at the end {os.getloadavg()[0]:.2f}.")
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
