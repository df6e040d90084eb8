"""Benchmark 5: Krylov solvers and diagonal estimators against the native peers, side by side.

* numpy: specop ``cg`` / ``minres`` against ``scipy.sparse.linalg.cg`` / ``minres`` at the same
  ``rtol`` on the 30^3 Laplacian (n = 27,000, sparse), a dense SPD matrix (n = 2,000, eigenvalues
  geometric in [1, 1e4]) and a dense symmetric indefinite one (n = 2,000, eigenvalues +-[1, 1e3]).
  scipy's minres stops on its own backward-error test ``||r|| <= rtol ||A|| ||x||``; the column
  "scipy its to ||r|| <= rtol ||b||" gives the iteration at which its iterates meet specop's test
  (a separate run with a callback, not timed). specop spends one more product per solve: the
  true residual of the returned ``x``.
* JAX: specop ``cg`` on a JAX array against ``jax.scipy.sparse.linalg.cg`` (jit-compiled, compile
  time excluded) on the dense SPD matrix; torch: specop ``cg`` on a torch tensor.
* torch, digits MLP Hessian (P = 4,810, float64): the damped solve ``(H + mu I) x = g`` of an
  influence-function query (``g`` the loss gradient), specop ``solve`` (cg) against curvlinops'
  ``CGInverseLinearOperator`` (GPyTorch's ``linear_cg``) at the same relative tolerance (at its
  defaults ``eps = stop_updating_after = 1e-10`` it stalls near 1e-5 and is capped; the compared row
  turns those guards off, see the note in the report); specop with
  the spectral preconditioner from ``eigsh(k=10)`` (its HVPs shown separately); minres at the same
  damping; cg at a damping where ``H + mu I`` is indefinite (it stops at negative curvature).
* Diagonal: relative error ``||d_hat - diag A|| / ||diag A||`` of Hutchinson and XDiag at equal
  matvecs, medians over 5 seeds, on the digits Hessian (exact diagonal from the dense Hessian,
  cached) and a spiked GOE matrix (n = 2,000).

``--quick`` is a smoke run (well under a minute): small problems, a smaller briefly trained MLP with
the damping set from its ``lambda_min``, one timed repeat.

    python -m benchmarks.solvers [--quick] [--device cuda] [--threads 1]
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

import specop
from benchmarks import problems
from benchmarks._common import Report, median_time, parser, peer, setup_torch, sync
from benchmarks.peers import Counted

RTOL = 1e-8
TINY = float(np.finfo(np.float64).tiny)  # linear_cg's eps: its safe-division guards off


def _dense_spd(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1.0, 1e4, n)) @ Q.T


def _dense_indefinite(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    d = np.geomspace(1.0, 1e3, n) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return (Q * d) @ Q.T


class _ReachedError(Exception):
    pass


def _scipy_minres_to_our_test(A: Any, b: np.ndarray) -> int:
    """Iterations until scipy's minres iterate meets ``||b - A x|| <= rtol ||b||`` (stopped there)."""
    count = [0]
    goal = RTOL * np.linalg.norm(b)

    def check(xk: np.ndarray) -> None:
        count[0] += 1
        if np.linalg.norm(b - A @ xk) <= goal:
            raise _ReachedError

    try:
        spla.minres(A, b, rtol=1e-15, maxiter=20 * b.size, callback=check)
    except _ReachedError:
        pass
    return count[0]


def _scipy_minres_rtol_for_our_test(A: Any, b: np.ndarray) -> float:
    """The largest scipy ``rtol`` (steps of ``10^(1/4)`` down from ours) meeting ``||b - A x|| <= RTOL ||b||``.

    scipy's minres stops on its own backward-error estimate, looser than our residual test: at the
    same ``rtol`` its answer may miss ours by orders of magnitude. Timing scipy at this ``rtol`` times
    it to an answer as accurate as ours.
    """
    goal = RTOL * np.linalg.norm(b)
    for j in range(40):
        rtol = RTOL * 10.0 ** (-j / 4)
        x, _ = spla.minres(A, b, rtol=rtol, maxiter=20 * b.size)
        if np.linalg.norm(b - A @ x) <= goal:
            return rtol
    return rtol


def numpy_rows(report: Report, quick: bool) -> None:
    table = report.tables[0]
    m, n = (8, 100) if quick else (30, 2000)
    cases = [(f"Laplacian {m}^3", problems.laplacian_3d(m), ("cg", "minres")),
             (f"dense SPD n={n}", _dense_spd(n), ("cg",)),
             (f"dense indefinite n={n}", _dense_indefinite(n), ("minres",))]
    repeats = 1 if quick else 3
    for name, A, solvers in cases:
        b = np.random.default_rng(7).standard_normal(A.shape[0])
        op = specop.aslinearoperator(A)
        for solver in solvers:
            ours = getattr(specop, solver)(op, b, rtol=RTOL, maxiter=20 * b.size)
            t_ours = median_time(lambda s=solver, o=op, v=b: getattr(specop, s)(o, v, rtol=RTOL, maxiter=20 * v.size),
                                 repeats)
            c = Counted(A.dot)
            S = spla.LinearOperator(A.shape, matvec=c, dtype=np.float64)
            x, _ = getattr(spla, solver)(S, b, rtol=RTOL, maxiter=20 * b.size)
            theirs = c.calls
            t_theirs = median_time(lambda s=solver, M=A, v=b: getattr(spla, s)(M, v, rtol=RTOL, maxiter=20 * v.size),
                                   repeats)
            to_ours = _scipy_minres_to_our_test(A, b) if solver == "minres" else theirs
            rel = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
            table.add(name, solver, ours.matvecs, theirs, to_ours, float(ours.residual_norms / np.linalg.norm(b)), rel,
                      t_ours, t_theirs, t_ours / t_theirs)
            report.goal(f"{solver} matvecs vs scipy, {name}", "<= scipy's to the same test + 1 (the true residual)",
                        ours.matvecs - to_ours, ours.matvecs <= to_ours + 1,
                        f"{ours.matvecs} vs {theirs} (scipy's iterates meet ||r|| <= rtol ||b|| after {to_ours})")
            report.goal(f"{solver} wall vs scipy, {name}", "<= 1.0x", t_ours / t_theirs, t_ours <= t_theirs)
            if solver == "minres":  # scipy timed again at the rtol that makes its answer as accurate as ours
                r_same = _scipy_minres_rtol_for_our_test(A, b)
                c.calls = 0
                x_s, _ = spla.minres(S, b, rtol=r_same, maxiter=20 * b.size)
                c_same = c.calls
                t_same = median_time(lambda M=A, v=b, r=r_same: spla.minres(M, v, rtol=r, maxiter=20 * v.size),
                                     repeats)
                rel_s = float(np.linalg.norm(b - A @ x_s) / np.linalg.norm(b))
                table.add(name, f"minres (scipy at rtol={r_same:.2g}: as accurate as ours)", ours.matvecs, c_same,
                          to_ours, float(ours.residual_norms / np.linalg.norm(b)), rel_s, t_ours, t_same,
                          t_ours / t_same)
                report.goal(f"minres wall vs scipy at equal accuracy, {name}", "<= 1.0x", t_ours / t_same,
                            t_ours <= t_same, f"scipy's rtol {r_same:.2g} gives ||r|| <= {RTOL:g} ||b||")


def native_rows(report: Report, device: Any, quick: bool) -> None:
    table = report.tables[1]
    n = 100 if quick else 2000
    A = _dense_spd(n)
    b = np.random.default_rng(7).standard_normal(n)
    repeats = 1 if quick else 3
    jax = peer("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import jax.scipy.sparse.linalg as jsla

        Aj, bj = jnp.asarray(A), jnp.asarray(b)
        ours = specop.cg(Aj, bj, rtol=RTOL, maxiter=20 * n)
        t_ours = median_time(lambda: specop.cg(Aj, bj, rtol=RTOL, maxiter=20 * n).x.block_until_ready(), repeats)
        solve = jax.jit(lambda M, v: jsla.cg(lambda u: M @ u, v, tol=RTOL, atol=0.0, maxiter=20 * n)[0])
        xj = solve(Aj, bj).block_until_ready()
        t_theirs = median_time(lambda: solve(Aj, bj).block_until_ready(), repeats)
        rel = float(np.linalg.norm(b - A @ np.asarray(xj)) / np.linalg.norm(b))
        table.add(f"dense SPD n={n}", "JAX", "jax.scipy.sparse.linalg.cg (jit)", ours.matvecs, None,
                  float(ours.residual_norms / np.linalg.norm(b)), rel, t_ours, t_theirs, t_ours / t_theirs)
        report.goal(f"cg wall vs jax.scipy cg, dense SPD n={n}", "<= 1.0x", t_ours / t_theirs, t_ours <= t_theirs,
                    "specop: per iteration the product, one compiled step program and a host read of the "
                    "status codes; jax.scipy's whole loop is one compiled while_loop")
    import torch

    At = torch.as_tensor(A, device=device)
    bt = torch.as_tensor(b, device=device)
    ours = specop.cg(At, bt, rtol=RTOL, maxiter=20 * n)

    def run_torch() -> None:
        specop.cg(At, bt, rtol=RTOL, maxiter=20 * n)
        sync(device)

    t_ours = median_time(run_torch, repeats)
    table.add(f"dense SPD n={n}", f"torch {device}", "(no torch-native cg in torch)", ours.matvecs, None,
              float(ours.residual_norms / np.linalg.norm(b)), None, t_ours, None, None)


def hessian_rows(report: Report, device: Any, quick: bool) -> dict[str, Any]:
    import torch

    table = report.tables[2]
    if quick:  # a smaller MLP (P = 1,210), briefly trained: a smoke run
        model, loss_fn, data = problems.digits_mlp("float64", device, widths=(64, 16, 10), train_steps=30)
    else:
        model, loss_fn, data = problems.digits_mlp("float64", device, train_steps=300)
    H, label = problems.specop_hessian(model, loss_fn, data)
    P = H.shape[0]
    g = H.gradient()
    mu, mu_ind = 0.03, 0.01  # around |lambda_min| = 0.025 of this Hessian: H + mu I is positive definite
    if quick:  # the briefly trained net's lambda_min differs: damp relative to it
        lam = float(specop.eigsh(H, k=1, which="SA", seed=0, tol=1e-4).eigenvalues[0])
        mu, mu_ind = 1.2 * abs(lam) + 1e-3, 0.4 * abs(lam)
    repeats = 1 if quick else 3
    gnorm = float(g.norm())

    def ours() -> Any:
        r = specop.solve(H, g, damping=mu, rtol=RTOL, maxiter=5000)
        sync(device)
        return r

    res = ours()
    t_ours = median_time(ours, repeats)
    table.add("digits MLP H", P, f"specop solve, cg ({label})", mu, res.matvecs, 0,
              float(res.residual_norms) / gnorm, t_ours, res.converged)
    eig = specop.eigsh(H, k=10, seed=0, tol=1e-4)
    M = specop.spectral_preconditioner(eig, mu)

    def pre() -> Any:
        r = specop.solve(H, g, damping=mu, rtol=RTOL, maxiter=5000, preconditioner=M)
        sync(device)
        return r

    rp = pre()
    t_pre = median_time(pre, repeats)
    table.add("digits MLP H", P, "specop solve, cg + spectral_preconditioner(eigsh k=10)", mu, rp.matvecs,
              eig.matvecs, float(rp.residual_norms) / gnorm, t_pre, rp.converged)
    out = {"ours": (res.matvecs, t_ours), "pre": (rp.matvecs, rp.iterations, res.iterations, eig.matvecs)}
    report.goal("spectral preconditioner cuts CG iterations on the damped digits Hessian", "fewer iterations",
                rp.iterations / res.iterations, rp.iterations < res.iterations,
                f"{rp.iterations} vs {res.iterations} iterations (+ {eig.matvecs} HVPs once for eigsh(k=10))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", specop.ConvergenceWarning)
        neg = specop.solve(H, g, damping=mu_ind, rtol=RTOL, maxiter=5000)  # stops at negative curvature
    rm = specop.solve(H, g, damping=mu, method="minres", rtol=RTOL, maxiter=5000)
    t_m = median_time(lambda: specop.solve(H, g, damping=mu, method="minres", rtol=RTOL, maxiter=5000), repeats)
    table.add("digits MLP H", P, f"specop solve, cg (H + {mu_ind:.3g} I indefinite: "
              f"{'negative curvature, ' if neg.info == -1 else ''}info {neg.info})", mu_ind, neg.matvecs, 0,
              float(neg.residual_norms) / gnorm, None, neg.converged)
    table.add("digits MLP H", P, "specop solve, minres", mu, rm.matvecs, 0, float(rm.residual_norms) / gnorm,
              t_m, rm.converged)
    curv = peer("curvlinops")
    if curv is None:
        report.notes.append("curvlinops is not installed: its CG inverse row is skipped.")
        return out
    params = [p for p in model.parameters() if p.requires_grad]
    Hc = curv.HessianLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
    inner = Hc._matmat
    count = {"hvps": 0}

    def counted(X: Any) -> Any:
        count["hvps"] += X[0].shape[-1]
        return inner(X)

    Hc._matmat = counted
    try:
        from curvlinops.examples import IdentityLinearOperator
    except ImportError:
        report.notes.append("curvlinops.examples.IdentityLinearOperator is missing: its CG row is skipped.")
        return out
    op = Hc + mu * IdentityLinearOperator([p.shape for p in params], device, torch.float64)

    def run_peer(**kw: Any) -> tuple[Any, int, float, list[str]]:
        inv = curv.CGInverseLinearOperator(op, tolerance=RTOL, **kw)
        count["hvps"] = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = inv @ g
            sync(device)
        msgs = [str(w.message) for w in caught if "jit.script" not in str(w.message)]
        rel = float((g - H.matvec(y) - mu * y).norm()) / gnorm
        return inv, count["hvps"], rel, msgs

    # GPyTorch's linear_cg at its defaults eps = stop_updating_after = 1e-10 (on the system scaled to ||b|| = 1):
    # once r^T r < eps it sets beta = 0 (a steepest-descent restart) and once p^T A p < eps it sets alpha = 0,
    # so the iterate stops moving near ||r|| / ||b|| ~ 1e-5 and it runs to max_iter; capped here.
    cap = 4 * res.iterations
    _, hvps_d, rel_d, msgs = run_peer(max_iter=cap)
    table.add("digits MLP H", P, f"curvlinops CGInverseLinearOperator, linear_cg defaults eps = stop_updating_after "
              f"= 1e-10 (stopped at max_iter = {cap})", mu, hvps_d, 0, rel_d, None, bool(rel_d <= RTOL))
    report.notes.append(
        f"curvlinops' CGInverseLinearOperator is GPyTorch's linear_cg: it scales b to norm 1 and stops when the "
        f"mean recursive residual norm is < tolerance (checked from iteration 11 on), so tolerance = rtol; but its "
        f"'safe divisions' set beta = 0 where r^T r < eps and alpha = 0 where p^T A p < eps (eps = 1e-10), and "
        f"stop_updating_after = 1e-10 freezes columns: at rtol {RTOL:g} it stalls at relative residual "
        f"{rel_d:.1e} and runs to max_iter ({hvps_d} HVPs at max_iter = {cap}; at max_iter = 5000 it ran the "
        f"5000). The row used for the goals passes eps = {TINY:.1e} (float64's smallest normal) and "
        f"stop_updating_after = 0, which only turns those guards off.")
    kw = {"max_iter": min(5000, 10 * res.iterations + 50), "eps": TINY, "stop_updating_after": 0.0}
    _, hvps, rel, msgs = run_peer(**kw)
    inv = curv.CGInverseLinearOperator(op, tolerance=RTOL, **kw)

    def theirs() -> Any:
        y = inv @ g
        sync(device)
        return y

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*jit.script.*")
        t_theirs = median_time(theirs, repeats)
    table.add("digits MLP H", P, "curvlinops CGInverseLinearOperator, eps = 2.2e-308, stop_updating_after = 0",
              mu, hvps, 0, rel, t_theirs, bool(rel <= RTOL) and not msgs)
    report.goal("damped Hessian solve: HVPs vs curvlinops CG", "<= 1.0x", res.matvecs / hvps,
                res.matvecs <= hvps, f"{res.matvecs} vs {hvps} HVPs (relative residuals "
                f"{float(res.residual_norms) / gnorm:.1e} vs {rel:.1e}; curvlinops' count includes its product "
                f"A x0 with x0 = 0)")
    report.goal("damped Hessian solve: wall vs curvlinops CG", "<= 1.0x", t_ours / t_theirs, t_ours <= t_theirs)
    out["curvlinops"] = (hvps, t_theirs)
    return out


def diagonal_rows(report: Report, device: Any, quick: bool) -> None:
    table = report.tables[3]
    budgets = (20, 100) if quick else (20, 100, 400)
    seeds = range(2 if quick else 5)
    cases = []
    n = 300 if quick else 2000
    S = problems.spiked(n, 10, 0)
    cases.append((f"spiked GOE n={n}", specop.aslinearoperator(S), np.diag(S)))
    if not quick:
        model, loss_fn, data = problems.digits_mlp("float64", device, train_steps=300)
        H, _ = problems.specop_hessian(model, loss_fn, data)
        _, theta0 = problems.flat_loss(model, loss_fn, data)
        import hashlib

        key = hashlib.sha1(theta0.detach().cpu().numpy().tobytes()).hexdigest()[:16]
        d = problems._cached(f"hessian-diag-{key}", lambda: np.diag(specop.backends.to_numpy(H.to_dense())))
        cases.append(("digits MLP H", H, d))
    for name, op, d in cases:
        for m in budgets:
            errs = {}
            for method in ("hutchinson", "xdiag"):
                e = [np.linalg.norm(specop.backends.to_numpy(specop.diagonal(op, method=method, num_probes=m,
                                                                             seed=s).value) - d)
                     / np.linalg.norm(d) for s in seeds]
                errs[method] = float(np.median(e))
            table.add(name, m, errs["hutchinson"], errs["xdiag"], errs["hutchinson"] / errs["xdiag"])
            report.goal(f"XDiag vs Hutchinson error, {name}, {m} matvecs", "< 1.0x", errs["xdiag"] / errs["hutchinson"],
                        errs["xdiag"] < errs["hutchinson"])


def main(argv: list[str] | None = None) -> Report:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device = setup_torch(args)
    report = Report("solvers", "Solvers and diagonal estimators", args.quick, str(device))
    report.table(f"cg / minres against scipy (numpy, rtol = {RTOL:g})",
                 ["problem", "solver", "specop matvecs", "scipy matvecs", "scipy its to ||r|| <= rtol ||b||",
                  "specop rel. residual", "scipy rel. residual", "specop wall s", "scipy wall s", "wall ratio"],
                 note="Relative residuals are true ones, ||b - A x|| / ||b||. Wall: medians of 3 runs.")
    report.table(f"cg on the native backends (rtol = {RTOL:g})",
                 ["problem", "backend", "peer", "specop matvecs", "peer matvecs", "specop rel. residual",
                  "peer rel. residual", "specop wall s", "peer wall s", "wall ratio"])
    report.table(f"Damped Hessian solve (H + mu I) x = g, digits MLP (rtol = {RTOL:g})",
                 ["model", "P", "method", "mu", "HVPs", "setup HVPs", "rel. residual", "wall s", "converged"],
                 note="g is the full-data loss gradient (an influence-function query). Setup HVPs: the eigsh run "
                      "that builds the preconditioner, spent once for any number of solves.")
    report.table("Diagonal estimators at equal matvecs",
                 ["matrix", "matvecs", "Hutchinson rel. error", "XDiag rel. error", "Hutchinson / XDiag"],
                 note="Relative error ||d_hat - diag A|| / ||diag A||, median over 5 seeds.")
    t0 = time.perf_counter()
    numpy_rows(report, args.quick)
    native_rows(report, device, args.quick)
    hessian_rows(report, device, args.quick)
    diagonal_rows(report, device, args.quick)
    report.notes.append(f"Total benchmark time {time.perf_counter() - t0:.0f} s.")
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
