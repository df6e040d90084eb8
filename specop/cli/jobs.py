"""The computations behind ``specop report|top|density|trace``.

Every job returns a JSON-ready dict of numbers. With ``--checkpoint DIR`` each finished
stage (the eigsh result, the norm of ``H - G``) is stored in ``DIR`` as JSON
(:class:`specop.cli.store.StageStore`), and every density's finished probes are
stored by :func:`specop.spectral_density`'s own ``checkpoint=``; a restarted run reads
them back, so it produces exactly the same JSON as an uninterrupted one.

Derived numbers (Papyan, "The full spectrum of deepnet Hessians at scale", ICML 2019;
Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization via Hessian
eigenvalue density", ICML 2019):

- outliers: the index of the largest ratio ``lambda_i / lambda_{i+1}`` among the
  positive top-k eigenvalues (the largest relative gap);
- trace: ``n * mean_r sum_i w_ri theta_ri`` from the SLQ quadrature, which for
  Rademacher probes equals Hutchinson's estimate ``mean_r v_r^T H v_r``;
- negative mass: the SLQ estimate of the fraction of eigenvalues below zero; and the
  "clearly negative" mass below ``-1e-3 * max |Ritz value|``. A trained network's Hessian
  has most of its eigenvalues in a cluster at numerical zero; how SLQ's few nodes there
  split across zero moves the first number by tens of percent, the second not;
- ``||H - G|| / ||H||`` in the spectral norm: ``eigsh(H - G, 1, which="LM")`` over
  ``max(lambda_max, |smallest Ritz value|)`` of ``H``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import specop
from specop.cli.errors import UsageError
from specop.cli.store import StageStore

__all__ = ["StageStore", "count_outliers", "operators_used", "check_sizes", "run_report", "run_top", "run_density",
           "run_trace"]


def operators_used(args: Any, has_ggn: bool) -> list[str]:
    """The operators the command computes with: ``"hessian"`` and/or ``"ggn"`` (the report uses G if there is one)."""
    if args.command == "report":
        return ["hessian", "ggn"] if has_ggn else ["hessian"]
    return [args.operator]


def check_sizes(args: Any, n: int) -> None:
    """Options that the operator's size ``n`` (the number of parameters P) rules out, refused before any work."""
    if n < 2:
        raise UsageError(f"the model has P = {n} parameter(s); the spectral methods need P >= 2")
    if args.command in ("report", "top") and args.k >= n:
        raise UsageError(f"--k {args.k}: expected at most P - 1 = {n - 1} (the model has P = {n} parameters)")
    if args.command == "trace" and args.method == "hutch++":
        need, have = 8 * n * args.probes, _host_memory()  # its probe blocks live at once: ~probes x P float64
        if have is not None and need > have:
            raise UsageError(f"--probes {args.probes}: hutch++ holds about {args.probes} vectors of P = {n} at once "
                             f"({need / 2**30:.1f} GiB), more than this machine's {have / 2**30:.1f} GiB; use fewer "
                             "probes or --method hutchinson (which streams them)")


def _host_memory() -> int | None:
    """Physical memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


#: "clearly negative": below -CLEAR times the largest |Ritz value|
CLEAR = 1e-3


def count_outliers(eigenvalues: Any) -> int:
    """Number of top eigenvalues above the largest relative gap ``lambda_i / lambda_{i+1}``."""
    w = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    w = w[w > 0]
    if w.size < 2:
        return int(w.size)
    return int(np.argmax(w[:-1] / w[1:])) + 1


def _eigsh(A: Any, args: Any) -> dict[str, Any]:
    res = specop.eigsh(A, args.k, which=args.which, tol=args.tol, seed=args.seed, return_eigenvectors=False)
    order = np.argsort(res.eigenvalues)[::-1]
    return {"eigenvalues": res.eigenvalues[order].tolist(), "residual_norms": res.residual_norms[order].tolist(),
            "matvecs": int(res.matvecs), "converged": bool(res.converged), "which": args.which, "k": args.k}


def _density(A: Any, args: Any, store: StageStore, name: str, progress: Any) -> Any:
    kw: dict[str, Any] = {"steps": args.steps} if args.method == "slq" else {"degree": args.steps}
    return specop.spectral_density(A, method=args.method, num_probes=args.probes, seed=args.seed,
                                   reorth=args.reorth or "none", checkpoint=store.file(f"density-{name}"),
                                   progress=progress, **kw)


def _mean_se(samples: np.ndarray) -> dict[str, float]:
    """Mean of per-probe samples and its standard error (NaN for one probe)."""
    r = len(samples)
    se = float(samples.std(ddof=1) / np.sqrt(r)) if r > 1 else float("nan")
    return {"value": float(samples.mean()), "std_error": se}


def _density_json(d: Any, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"matvecs": int(d.matvecs), "support": list(d.support())}
    if hasattr(d, "weights"):
        traces = n * d.quadrature(lambda x: x)
        neg = d.quadrature(lambda x: (x < 0).astype(np.float64))
        cut = -CLEAR * max(abs(v) for v in d.support())
        clear = d.quadrature(lambda x: (x < cut).astype(np.float64))
        out.update(nodes=d.nodes.tolist(), weights=d.weights.tolist(), trace=_mean_se(traces),
                   negative_mass=_mean_se(neg), clearly_negative_mass={**_mean_se(clear), "below": cut})
    else:
        out.update(probe_moments=np.asarray(d.probe_moments).tolist(), moments=np.asarray(d.moments).tolist(),
                   bounds=list(d.bounds), kernel=d.kernel)
    return out


def run_report(problem: Any, args: Any, store: StageStore, ui: Any) -> dict[str, Any]:
    """Top-k of ``H``, outliers, SLQ densities of ``H`` and ``G``, trace, negative mass, ``||H - G|| / ||H||``."""
    H, G = problem.H, problem.G
    n = H.shape[0]
    with ui.task("top-k eigenvalues of H (eigsh)", None):
        top = store.stage("eigsh-hessian", lambda: _eigsh(H, args))
    top["outliers"] = count_outliers(top["eigenvalues"])
    with ui.task("SLQ density of H", args.probes) as cb:
        dh = _density_json(_density(H, args, store, "hessian", cb), n)
    result: dict[str, Any] = {"hessian": {"top": top, "density": dh}}
    if G is not None:
        with ui.task("SLQ density of G", args.probes) as cb:
            result["ggn"] = {"density": _density_json(_density(G, args, store, "ggn", cb), n)}
        with ui.task("||H - G|| (eigsh)", None):
            res = store.stage("eigsh-residual", lambda: _eigsh(H - G, _with(args, k=1, which="LM")))
        norm_h = max(abs(top["eigenvalues"][0]), abs(dh["support"][0]))
        result["residual"] = {"norm": "spectral", "norm_H_minus_G": abs(res["eigenvalues"][0]),
                              "norm_H": norm_h, "ratio": abs(res["eigenvalues"][0]) / norm_h,
                              "matvecs": res["matvecs"]}
    return result


def _with(args: Any, **changes: Any) -> Any:
    import argparse

    return argparse.Namespace(**{**vars(args), **changes})


def _operator(problem: Any, args: Any) -> Any:
    if args.operator == "ggn":
        if problem.G is None:
            raise UsageError("--operator ggn: this model has no Gauss-Newton operator (a JAX factory needs model_fn)")
        return problem.G
    return problem.H


def run_top(problem: Any, args: Any, store: StageStore, ui: Any) -> dict[str, Any]:
    """Top-k eigenpairs (values and residuals) of the chosen operator."""
    with ui.task(f"eigsh k={args.k} which={args.which}", None):
        top = store.stage("eigsh", lambda: _eigsh(_operator(problem, args), args))
    if args.which == "LA":  # outliers are a property of the largest eigenvalues
        top["outliers"] = count_outliers(top["eigenvalues"])
    return {"top": top}


def run_density(problem: Any, args: Any, store: StageStore, ui: Any) -> dict[str, Any]:
    """Spectral density (SLQ or KPM) of the chosen operator."""
    A = _operator(problem, args)
    with ui.task(f"{args.method.upper()} density", args.probes) as cb:
        return {"density": _density_json(_density(A, args, store, args.operator, cb), A.shape[0])}


def run_trace(problem: Any, args: Any, store: StageStore, ui: Any) -> dict[str, Any]:
    """Stochastic trace estimate of the chosen operator."""
    A = _operator(problem, args)

    def compute() -> dict[str, Any]:
        est = specop.trace(A, method=args.method, num_probes=args.probes, seed=args.seed)
        return {"value": float(est.value), "std_error": float(est.std_error), "matvecs": int(est.matvecs),
                "method": args.method}

    with ui.task(f"trace ({args.method})", None):
        return {"trace": store.stage("trace", compute)}
