"""The ``specop`` command: spectral analysis of a model's Hessian and Gauss-Newton matrices.

``specop`` (or ``specop report``) trains the embedded digits MLP
(:mod:`specop.cli.digits`) and prints a table, writes a PNG and a JSON; ``specop top``,
``specop density`` and ``specop trace`` run one algorithm. See ``specop --help`` and
the docs page "Command line".

Exit codes: 0 success, 2 bad arguments or a bad ``--model`` factory (one line, no
traceback unless ``--debug``), 130 interrupted (Ctrl-C / SIGTERM; finished work stays
in ``--checkpoint``).
"""

from __future__ import annotations

import platform
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

_EXCLUDED = ("output", "checkpoint", "quiet", "debug", "command")


def _versions(backend: str) -> dict[str, str]:
    import numpy
    import scipy

    import specop

    out = {"specop": specop.__version__, "python": platform.python_version(), "numpy": numpy.__version__,
           "scipy": scipy.__version__}
    try:
        mod = __import__(backend)
        out[backend] = mod.__version__
    except ImportError:
        pass
    return out


def _settings(args: Any) -> dict[str, Any]:
    return {k: v for k, v in sorted(vars(args).items()) if k not in _EXCLUDED}


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: Any) -> dict[str, Any]:
    """Run a parsed command; returns the JSON document (also written to ``--output``)."""
    from specop.cli import jobs
    from specop.cli.output import UI, plot_density, plot_report, print_table, write_json
    from specop.cli.problem import build_problem

    rank = 0
    if args.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if (args.device or "").startswith("cuda") else "gloo")
        rank = dist.get_rank()
    ui = UI(quiet=args.quiet or rank != 0)
    settings = _settings(args)
    store = jobs.StageStore(args.checkpoint, settings)
    with ui.task("model and operators", None):
        problem = build_problem(args)
    job = {"report": jobs.run_report, "top": jobs.run_top, "density": jobs.run_density, "trace": jobs.run_trace}
    result = job[args.command](problem, args, store, ui)
    doc = {"command": args.command, "settings": settings, "model": problem.info,
           "versions": _versions(problem.info.get("backend", "torch")), **result}
    if rank != 0:
        return doc
    output = Path(args.output or f"specop-{args.command}.json")
    write_json(output, doc)
    title = f"specop {args.command}: {problem.info.get('model')} (P = {problem.info['num_params']})"
    print_table(title, result)
    png = output.with_suffix(".png")
    if args.command == "report":
        plot_report(png, result, title)
    elif args.command == "density":
        plot_density(png, result, title)
    else:
        png = None
    ui.print(f"wrote {output}" + (f" and {png}" if png else "") + "   (wall time: "
             + ", ".join(f"{k} {v:.1f}s" for k, v in ui.times.items()) + ")")
    return doc


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``specop`` console script; returns the exit code."""
    from specop.cli.parser import COMMANDS, build_parser
    from specop.cli.problem import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "report")
    args = build_parser().parse_args(argv)
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        run(args)
    except KeyboardInterrupt:
        kept = f"finished work is kept in {args.checkpoint}; rerun the same command to resume" if args.checkpoint \
            else "rerun with --checkpoint DIR to keep finished work"
        print(f"specop: interrupted; {kept}", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError) as exc:
        if args.debug:
            raise
        print(f"specop: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, old)
    return 0
