"""Terminal output (rich table and progress, plain-text fallback), the JSON and the PNG."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UI", "write_json", "write_outputs", "plot_report", "plot_density", "print_table"]


class UI:
    """Progress of the stages on stderr: rich bars when available, plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.times: dict[str, float] = {}
        try:
            from rich.console import Console

            self.console: Any = Console(stderr=True)
        except ImportError:
            self.console = None

    @contextlib.contextmanager
    def task(self, name: str, total: int | None) -> Iterator[Any]:
        """Context for one stage; yields a ``progress(done, total)`` callback."""
        t0 = time.perf_counter()
        if self.quiet:
            yield None
        elif self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

            with Progress(SpinnerColumn(), "{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=self.console, transient=False) as prog:
                tid = prog.add_task(name, total=total)
                yield lambda done, tot: prog.update(tid, completed=done, total=tot)
                prog.update(tid, completed=total if total is not None else 1, total=total or 1)
        else:
            print(f"{name} ...", file=sys.stderr, flush=True)
            yield lambda done, tot: print(f"  {done}/{tot}", file=sys.stderr, flush=True)
        self.times[name] = time.perf_counter() - t0

    def print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN and Inf as ``null`` (strict JSON; e.g. the standard error of one probe is undefined)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` atomically (floats as their shortest round-trip repr, NaN/Inf as null)."""
    write_outputs(path, obj, None)


def write_outputs(path: Path, doc: Any, plot: Callable[[Path], None] | None) -> None:
    """The JSON at ``path`` and, with ``plot``, the PNG beside it: both rendered to temporary files first.

    Only when both are complete are they renamed over their targets (the PNG first,
    the JSON last), so a failure leaves neither a ``*.tmp`` nor a half-written
    output, and removes the directories it created for them.
    """
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    tmps: list[str] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        tmps.append(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(_json_safe(doc), f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        moves = [(tmp, path)]
        if plot is not None:
            png = path.with_suffix(".png")
            fd, tmp_png = tempfile.mkstemp(dir=path.parent, prefix=png.name, suffix=".tmp")
            os.close(fd)
            tmps.append(tmp_png)
            plot(Path(tmp_png))
            moves.insert(0, (tmp_png, png))
        for src, dst in moves:
            os.replace(src, dst)
    except BaseException:
        for t in tmps:
            if os.path.exists(t):
                os.unlink(t)
        for d in created:  # innermost first; only the empty ones this call made
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    top = result.get("top") or result.get("hessian", {}).get("top")
    if top:
        for i, (w, r) in enumerate(zip(top["eigenvalues"], top["residual_norms"], strict=True), 1):
            rows.append((f"lambda_{i}", f"{w:.6g}   (residual {r:.1e})"))
        if "outliers" in top:
            rows.append(("outliers (largest relative gap)", str(top["outliers"])))
        rows.append(("eigsh matvecs / converged", f"{top['matvecs']} / {top['converged']}"))
    dens = result.get("density") or result.get("hessian", {}).get("density")
    if dens and "trace" in dens:
        rows.append(("trace (SLQ)", f"{dens['trace']['value']:.6g} ± {dens['trace']['std_error']:.2g}"))
        nm = dens["negative_mass"]
        if "clearly_negative_mass" in dens:
            cm = dens["clearly_negative_mass"]
            rows.append((f"negative mass (λ < {cm['below']:.3g})", f"{cm['value']:.4f} ± {cm['std_error']:.2g}"))
            rows.append(("  mass below 0 (zero cluster: unstable)", f"{nm['value']:.4f} ± {nm['std_error']:.2g}"))
        else:
            rows.append(("negative-eigenvalue mass", f"{nm['value']:.4f} ± {nm['std_error']:.2g}"))
    if dens:
        rows.append(("spectrum support (Ritz)", "[{:.4g}, {:.4g}]".format(*dens["support"])))
    if "residual" in result:
        rows.append(("||H - G|| / ||H|| (spectral)", f"{result['residual']['ratio']:.4f}"))
    if "trace" in result:
        t = result["trace"]
        rows.append((f"trace ({t['method']})", f"{t['value']:.6g} ± {t['std_error']:.2g}  ({t['matvecs']} matvecs)"))
    return rows


def print_table(title: str, result: dict[str, Any]) -> None:
    """The summary table on stdout (rich when installed)."""
    rows = _rows(result)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for k, v in rows:
            print(f"  {k:<34} {v}")
        return
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def _curve(d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.asarray(d["nodes"]), np.asarray(d["weights"])
    lo, hi = d["support"]
    width = hi - lo if hi > lo else max(abs(hi), 1.0)  # one Ritz value (one step): a width of its own scale
    pad = 0.05 * width
    grid = np.linspace(lo - pad, hi + pad, 1000)
    sigma = 0.01 * width
    dens = np.exp(-0.5 * ((grid[None, None, :] - nodes[:, :, None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return grid, np.einsum("ri,rig->g", weights, dens) / nodes.shape[0]


def plot_report(path: Path, result: dict[str, Any], title: str) -> None:
    """Log-scale SLQ densities of H and G with the outliers marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label, color in (("hessian", "Hessian H", "C0"), ("ggn", "Gauss-Newton G", "C1")):
        if key in result:
            grid, y = _curve(result[key]["density"])
            ax.semilogy(grid, np.maximum(y, 1e-12), color=color, label=label)
    top = result["hessian"]["top"]
    out = top["eigenvalues"][: top["outliers"]]
    for i, w in enumerate(out):
        ax.axvline(w, color="C3", ls="--", lw=0.8, label=f"{len(out)} outliers of H (eigsh)" if i == 0 else None)
    ax.set_ylim(bottom=1e-6)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_density(path: Path, result: dict[str, Any], title: str) -> None:
    """Log-scale density of ``specop density`` (SLQ: smoothed quadrature; KPM: nothing stored to plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = result["density"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if "nodes" in d:
        grid, y = _curve(d)
    else:
        from specop.linalg.density import KPMDensity  # rebuild from the stored moments

        kd = KPMDensity(matvecs=d["matvecs"], n=0, probe_moments=np.asarray(d["probe_moments"]),
                        bounds=tuple(d["bounds"]), kernel=d["kernel"])
        lo, hi = (float(b) for b in d["bounds"])
        grid = np.linspace(lo, hi, 1000)
        y = kd.evaluate(grid)
    ax.semilogy(grid, np.maximum(y, 1e-12))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
