"""Benchmark 1: one full-data Hessian-vector product versus one gradient, and peers' matvecs.

For the digits MLP (P = 4,810, float64), a small digits CNN and (full run only) a
1M-parameter float32 MLP, all on the full 1,797-sample data set: median time of one
gradient and of one HVP by autograd double backward, torch.func forward-over-reverse,
specop's operator, curvlinops, hessian-eigenthings, PyHessian (one retained graph)
and a jitted JAX HVP (MLP only). Ratios are HVP / eager-autograd gradient of the same
model, timed in back-to-back pairs (JAX rows also against JAX's own jitted gradient).

    python -m benchmarks.operators [--quick] [--device cuda] [--threads N]
"""

from __future__ import annotations

from typing import Any

from benchmarks import peers, problems
from benchmarks._common import Report, paired, parser, setup_torch


def peer_matvecs(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> dict[str, Any]:
    """``{label: v -> H v}`` of every installed peer on the same model and data (full batch)."""
    out: dict[str, Any] = {}
    mv = peers.curvlinops_matvec(model, loss_fn, data)
    if mv is not None:
        out["curvlinops HessianLinearOperator"] = mv
    op = peers.eigenthings_operator(model, loss_fn, data)
    if op is not None:
        out["hessian-eigenthings HessianOperator"] = op.matvec
    mv = peers.pyhessian_matvec(model, loss_fn, data)
    if mv is not None:
        out["PyHessian (one retained graph)"] = mv
    return out


def jax_mlp(model: Any, data: tuple[Any, Any]) -> tuple[Any, Any] | None:
    """``(hvp, grad)``: jitted JAX closures of a torch MLP's loss (weights copied), or None."""
    got = problems.jax_mlp_loss(model, data)
    if got is None:
        return None
    import jax
    import jax.numpy as jnp

    loss, theta0, (X, y) = got
    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda th, v, X, y: jax.jvp(lambda t: jax.grad(loss)(t, X, y), (th,), (v,))[1])
    v = jnp.ones_like(theta0)
    return (lambda: jax.block_until_ready(hvp(theta0, v, X, y))), (lambda: jax.block_until_ready(grad(theta0, X, y)))


def measure(report: Report, name: str, model: Any, loss_fn: Any, data: tuple[Any, Any], device: Any,
            repeats: int, use_jax: bool = True) -> dict[str, float]:
    """Add the rows of one model; returns ``{method: HVP/grad}``."""
    import torch

    P = problems.num_params(model)
    eager, egrad = problems.eager_hvp(model, loss_fn, data)
    fhvp, fgrad, theta0 = problems.func_hvp(model, loss_fn, data)
    H, label = problems.specop_hessian(model, loss_fn, data)
    v = torch.randn(P, dtype=theta0.dtype, device=device, generator=torch.Generator(device).manual_seed(0))

    def pair(fn: Any) -> tuple[float, float]:
        return paired(fn, egrad, repeats, device)

    rows = {"autograd gradient (reference)": pair(egrad), "torch.func gradient": pair(fgrad),
            "autograd double backward HVP": pair(lambda: eager(v)),
            "torch.func jvp(grad) HVP": pair(lambda: fhvp(v)), f"{label} matvec": pair(lambda: H @ v)}
    for plabel, mv in peer_matvecs(model, loss_fn, data).items():
        rows[f"{plabel} matvec"] = pair(lambda mv=mv: mv(v))
    ratios = {}
    for method, (t, r) in rows.items():
        ratios[method] = r
        report.tables[0].add(name, P, method, 1e3 * t, r)
    jx = jax_mlp(model, data) if device.type == "cpu" and use_jax else None
    if jx is not None:
        jh, jg = jx
        t_jg, r_jg = pair(jg)
        t_jh, r_jh = pair(jh)
        report.tables[0].add(name, P, "JAX jit gradient", 1e3 * t_jg, r_jg)
        report.tables[0].add(name, P, "JAX jit jvp(grad) HVP", 1e3 * t_jh, r_jh)
        _, r_own = paired(jh, jg, repeats, device)
        ratios["JAX jit HVP / JAX jit gradient"] = r_own
        report.notes.append(f"{name}: JAX jit HVP / JAX jit gradient = {r_own:.2f} (paired median).")
    ratios["_label"] = label  # type: ignore[assignment]
    return ratios


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--no-jax", action="store_true", help="skip the JAX rows")
    args = p.parse_args(argv)
    device = setup_torch(args)
    report = Report("operators", "Operators: HVP time / gradient time, and matvecs against the peers",
                    args.quick, str(device))
    report.table("One full-data HVP or gradient (median)", ["model", "P", "method", "ms", "÷ autograd gradient"],
                 note="Full batch (1,797 digits). `÷ autograd gradient`: median over repeats of (this call's time "
                      "÷ an autograd gradient timed just before it), so that machine load drifting during the run "
                      "cancels; `ms`: median time of the call.")
    repeats = 3 if args.quick else 15
    train = 10 if args.quick else 300
    cases: list[tuple[str, Any]] = [
        ("digits MLP f64", lambda: problems.digits_mlp("float64", device, train_steps=train))]
    if not args.quick:
        cases += [("digits CNN f64", lambda: problems.digits_cnn("float64", device)),
                  ("MLP 64-1000-1000-10 f32", lambda: problems.digits_mlp(
                      "float32", device, widths=(64, 1000, 1000, 10), train_steps=20))]
    results = {}
    for name, make in cases:
        model, loss_fn, data = make()
        results[name] = measure(report, name, model, loss_fn, data, device, repeats, not args.no_jax)
    for name, r in results.items():
        label = r.pop("_label")
        ours = r[f"{label} matvec"]
        report.goal(f"HVP/grad ≤ 2.5 ({name}, {label})", "≤ 2.5", ours, ours <= 2.5)
        peers = {k: t for k, t in r.items() if k.startswith(("curvlinops", "hessian-eigenthings"))}
        for k, t in peers.items():
            report.goal(f"matvec no slower than {k.removesuffix(' matvec')} ({name})", "ratio ≤ 1",
                        ours / t, ours <= t * 1.05, "specop matvec time ÷ peer matvec time (5% noise band)")
    report.finish(args.output)
    return report


if __name__ == "__main__":
    main()
