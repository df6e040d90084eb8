"""Record or compare cg / minres results on seeded cases (x, residual norms, iterations, matvecs, info).

    python -m benchmarks.solver_equivalence record OUT.npz   # from one checkout
    python -m benchmarks.solver_equivalence compare OUT.npz  # from another: bitwise comparison

Cases: SPD, indefinite, ill-conditioned and rank-deficient dense matrices (n in 5..60), vector and
block right-hand sides, with and without preconditioner, shift and x0, on numpy.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

import specop


def _cases():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(5, 61))
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        kind = seed % 4
        if kind == 0:
            d = np.geomspace(1.0, 10.0 ** rng.uniform(1, 8), n)
        elif kind == 1:
            d = np.geomspace(1.0, 1e3, n) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        elif kind == 2:
            d = np.geomspace(1.0, 1e4, n)
            d[: n // 4] = 0.0
        else:
            d = rng.uniform(0.1, 10.0, n)
        A = (Q * d) @ Q.T
        A = (A + A.T) / 2
        k = 1 if seed % 3 else int(rng.integers(2, 5))
        b = rng.standard_normal(n) if k == 1 else rng.standard_normal((n, k))
        kw = {"rtol": float(10.0 ** -rng.uniform(3, 10))}
        if seed % 5 == 1:
            kw["x0"] = rng.standard_normal(b.shape)
        if seed % 7 == 2:
            kw["M"] = np.diag(1.0 / np.maximum(np.abs(np.diag(A)), 1e-3))
        for solver in ("cg", "minres"):
            extra = dict(kw)
            if solver == "minres" and seed % 6 == 3:
                extra["shift"] = float(rng.uniform(-1, 1))
            if seed % 11 == 4:
                extra["maxiter"] = max(1, n // 3)
            yield f"{seed}-{solver}", solver, A, b, extra


def run() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    warnings.simplefilter("ignore")
    for name, solver, A, b, kw in _cases():
        r = getattr(specop, solver)(A, b, **kw)
        out[name + "/x"] = np.asarray(r.x)
        out[name + "/res"] = np.asarray(r.residual_norms)
        out[name + "/hist"] = np.asarray(r.residual_history)
        out[name + "/meta"] = np.array([r.iterations, r.matvecs, r.info, int(r.converged)])
        nc = r.negative_curvature
        out[name + "/neg"] = np.zeros(0) if nc is None else np.asarray(nc)
    return out


def main(argv: list[str]) -> int:
    mode, path = argv
    res = run()
    if mode == "record":
        np.savez(path, **res)
        print(f"recorded {len(res) // 5} solves")
        return 0
    ref = np.load(path)
    bad = [k for k in res if k not in ref or res[k].shape != ref[k].shape
           or not np.array_equal(res[k], ref[k], equal_nan=True)]
    print(f"{len(res) // 5} solves compared, {len(bad)} arrays differ" + (f": {bad[:10]}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
