"""Shared pieces of the benchmark scripts: timing, peers, machine facts, tables and JSON.

Every script builds a :class:`Report` (tables of rows plus the goals it checks),
prints it as markdown and writes it as JSON; ``python -m benchmarks.report`` turns
the JSON files in ``benchmarks/results`` into ``docs/benchmarks.md``.

Timing is in-process: one warm-up call, then the median of ``repeats`` calls of
``time.perf_counter`` (shared machines are noisy; medians and ratios are quoted).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("SPECOP_BENCH_CACHE", Path.home() / ".cache" / "specop-bench"))

PEER_DISTS = {
    "curvlinops": "curvlinops-for-pytorch",
    "pyhessian": "pyhessian",
    "hessian_eigenthings": "hessian-eigenthings",
    "matfree": "matfree",
}


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` of one call."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peer(module: str) -> Any | None:
    """The peer module if it is installed, else ``None`` (the row is then skipped)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Machine facts and library versions for the JSON header."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpus": os.cpu_count(),
    }
    for dist in ("specop", "numpy", "scipy", "torch", "jax", *PEER_DISTS.values()):
        info[dist] = _version(dist)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Table:
    """One markdown table: a title, column names, rows of values and a note."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def add(self, *row: Any) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"row of {len(row)} values for {len(self.columns)} columns in {self.title!r}")
        self.rows.append([_plain(x) for x in row])


@dataclass
class Goal:
    """A target from the issues: what, the threshold, the measured figure, met or not."""

    name: str
    target: str
    measured: float | None
    met: bool | None
    detail: str = ""


@dataclass
class Report:
    """The result of one benchmark script."""

    name: str
    title: str
    quick: bool
    device: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine)

    def table(self, title: str, columns: list[str], note: str = "") -> Table:
        t = Table(title, columns, note=note)
        self.tables.append(t)
        return t

    def goal(self, name: str, target: str, measured: float | None, met: bool | None, detail: str = "") -> None:
        self.goals.append(Goal(name, target, None if measured is None else float(measured),
                               None if met is None else bool(met), detail))

    def markdown(self) -> str:
        return render(asdict(self))

    def finish(self, output: str | None) -> None:
        """Print the markdown and write the JSON (to ``output``, or results/<name>.json unless quick)."""
        print(self.markdown())
        path = Path(output) if output else (None if self.quick else RESULTS / f"{self.name}.json")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(self), indent=1, default=_plain) + "\n")
            print(f"wrote {path}", file=sys.stderr)


def _plain(x: Any) -> Any:
    """JSON-friendly scalar (numpy/torch scalars to Python)."""
    if hasattr(x, "item") and callable(x.item):
        try:
            return x.item()
        except (ValueError, RuntimeError):
            return str(x)
    return x


def fmt(x: Any) -> str:
    """A table cell: 3 significant digits for floats."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.3g}"
        return f"{x:.2e}"
    return str(x)


def render(report: dict[str, Any], level: int = 2) -> str:
    """Markdown of a report dict (as stored in JSON)."""
    h = "#" * level
    out = [f"{h} {report['title']}", ""]
    if report.get("quick"):
        out += ["*Quick smoke run (`--quick`): small sizes, not the reported figures.*", ""]
    for t in report["tables"]:
        out += [f"{h}# {t['title']}", ""]
        out.append("| " + " | ".join(t["columns"]) + " |")
        out.append("|" + "---|" * len(t["columns"]))
        out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in t["rows"]]
        if t.get("note"):
            out += ["", t["note"]]
        out.append("")
    if report["goals"]:
        out += [f"{h}# Goals", "", "| goal | target | measured | met |", "|---|---|---|---|"]
        for g in report["goals"]:
            met = "—" if g["met"] is None else ("**yes**" if g["met"] else "**no**")
            out.append(f"| {g['name']} | {g['target']} | {fmt(g['measured'])} | {met} |")
        details = [f"- {g['name']}: {g['detail']}" for g in report["goals"] if g.get("detail")]
        out += ["", *details] if details else []
        out.append("")
    if report["notes"]:
        out += [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(out)


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick``, ``--device``, ``--output``, ``--threads``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test of a few seconds")
    p.add_argument("--device", default="cpu", help="torch device for the torch rows (cpu, cuda)")
    p.add_argument("--output", default=None, help="JSON path (default benchmarks/results/<name>.json)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    return p


def setup_torch(args: argparse.Namespace) -> Any:
    """Import torch, apply ``--threads``; returns the torch device."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA device on this machine")
    return torch.device(args.device)


def sync(device: Any) -> None:
    """Wait for queued device work (CUDA) so that wall times are real."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def paired(fn: Any, ref: Any, repeats: int, device: Any) -> tuple[float, float]:
    """(median seconds of ``fn``, median of ``fn / ref`` over pairs run back to back): robust to load drift."""
    fn(), ref(), sync(device)
    ts, rs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref(), sync(device)
        t1 = time.perf_counter()
        fn(), sync(device)
        t2 = time.perf_counter()
        ts.append(t2 - t1)
        rs.append((t2 - t1) / (t1 - t0))
    return statistics.median(ts), statistics.median(rs)
