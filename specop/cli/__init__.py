"""The ``specop`` command: spectral analysis of a model's Hessian and Gauss-Newton matrices.

``specop`` (or ``specop report``) trains the embedded digits MLP
(:mod:`specop.cli.digits`) and prints a table, writes a PNG and a JSON; ``specop top``,
``specop density`` and ``specop trace`` run one algorithm. See ``specop --help`` and
the docs page "Command line".

Exit codes (:mod:`specop.cli.errors`; one line on stderr, no traceback unless
``--debug``): 0 success; 2 a bad argument, path, ``--model`` factory, model, data or
checkpoint, found before any work wherever possible (nothing is created then);
1 the run could not finish (a ``--distributed`` peer silent for ``--timeout`` seconds or
dead, out of memory, an output not writable); 130 interrupted (Ctrl-C / SIGTERM;
finished work stays in ``--checkpoint``).

Order of a run: options, device and paths are checked; the model is built and checked
(data, loss, one probe product per operator); only then is the ``--checkpoint``
directory created (or its fingerprints compared); the JSON and PNG are written last,
both atomically.

With ``--distributed`` (under ``torchrun``) every rank runs the same command on its
shard of the data; rank 0 alone prints, writes the JSON and PNG and owns the
``--checkpoint`` directory (the other ranks receive its verdicts, stored stages and
density checkpoints by broadcast, so all ranks resume from the same state, and a
refusal on rank 0 stops every rank). Every collective waits at most ``--timeout``
seconds (default 300).
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

_EXCLUDED = ("output", "checkpoint", "quiet", "debug", "command", "timeout")


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


_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _init_distributed(args: Any) -> tuple[int, int, bool]:
    """Join the ``torchrun`` process group; returns ``(rank, world_size, initialised_here)``.

    A CUDA ``--device`` without an index becomes ``cuda:LOCAL_RANK`` (one GPU per process).
    Every collective of the group waits at most ``--timeout`` seconds.
    """
    from specop.cli.checks import check_device
    from specop.cli.errors import UsageError

    if args.backend == "jax":
        raise UsageError("--distributed: only the torch backend is supported (JAX shards with jax.distributed)")
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise UsageError("--distributed: needs torch (pip install 'specop[torch]')") from None
    if dist.is_initialized():
        check_device(args)
        return dist.get_rank(), dist.get_world_size(), False
    missing = [v for v in _TORCHRUN_ENV if not os.environ.get(v)]
    if missing:
        raise UsageError(f"--distributed needs torchrun's environment ({', '.join(missing)} not set); "
                         "run: torchrun --nproc_per_node=N -m specop ... --distributed")
    cuda = (args.device or "").startswith("cuda")
    if args.device == "cuda":
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    check_device(args)
    if cuda:
        torch.cuda.set_device(args.device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=args.timeout))
    return dist.get_rank(), dist.get_world_size(), True


def run(args: Any) -> dict[str, Any]:
    """Run a parsed command; returns the JSON document (also written to ``--output``).

    With ``--distributed`` every rank returns the document; only rank 0 writes it.
    """
    from specop.cli.checks import check_device, check_options, check_output
    from specop.cli.store import RankStore, StageStore

    check_options(args)
    settings = _settings(args)  # before --distributed picks this rank's device
    if not args.distributed:
        check_device(args)
        check_output(args)
        return _run(args, settings, StageStore(args.checkpoint, settings), 0)
    rank, world, owned = _init_distributed(args)
    settings["world_size"] = world
    try:
        store = RankStore(args.checkpoint, settings, rank, precheck=lambda: check_output(args))
        try:
            doc = _run(args, settings, store, rank)
        finally:
            store.close()
        # every rank waits for rank 0's outputs before any tears its process group down: a rank that
        # destroyed gloo while a peer still used the connections was seen to abort (SIGABRT) at exit
        _barrier(args.timeout)
        return doc
    finally:
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _barrier(timeout: float) -> None:
    import torch.distributed as dist

    from specop.curvature.torch._data import wait_collective

    wait_collective(dist.barrier(async_op=True), "the end of the run", timeout)


def _run(args: Any, settings: dict[str, Any], store: Any, rank: int) -> dict[str, Any]:
    from specop import backends
    from specop.cli import jobs
    from specop.cli.output import UI, plot_density, plot_report, print_table, write_outputs
    from specop.cli.problem import build_problem, probe_operators

    ui = UI(quiet=args.quiet or rank != 0)
    with ui.task("model and operators", None):
        problem = build_problem(args)
        jobs.check_sizes(args, problem.H.shape[0])
        probes = probe_operators(problem, jobs.operators_used(args, problem.G is not None))
    store.open(probes, backends.dtype_name(problem.H.dtype))
    job = {"report": jobs.run_report, "top": jobs.run_top, "density": jobs.run_density, "trace": jobs.run_trace}
    result = job[args.command](problem, args, store, ui)
    doc = {"command": args.command, "settings": settings, "model": problem.info,
           "versions": _versions(problem.info.get("backend", "torch")), **result}
    if rank != 0:
        return doc
    output = Path(args.output or f"specop-{args.command}.json")
    title = f"specop {args.command}: {problem.info.get('model')} (P = {problem.info['num_params']})"
    plot = {"report": plot_report, "density": plot_density}.get(args.command)
    png = output.with_suffix(".png") if plot else None
    write_outputs(output, doc, None if plot is None else (lambda path: plot(path, result, title)))
    print_table(title, result)
    ui.print(f"wrote {output}" + (f" and {png}" if png else "") + "   (wall time: "
             + ", ".join(f"{k} {v:.1f}s" for k, v in ui.times.items()) + ")")
    return doc


def _one_line_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                      line: Any = None) -> None:
    from specop.cli.errors import one_line

    print(f"specop: warning: {one_line(message, 1000)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``specop`` console script; returns the exit code."""
    from specop.cli.errors import classify
    from specop.cli.parser import COMMANDS, build_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "report")
    args = build_parser().parse_args(argv)
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warning
            run(args)
    except KeyboardInterrupt:
        kept = f"finished work is kept in {args.checkpoint}; rerun the same command to resume" if args.checkpoint \
            else "rerun with --checkpoint DIR to keep finished work"
        print(f"specop: interrupted; {kept}", file=sys.stderr)
        return 130
    except Exception as exc:
        verdict = None if args.debug else classify(exc, args)
        if verdict is None:  # --debug, or a bug in specop: keep the traceback
            raise
        code, message = verdict
        print(f"specop: error: {message}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, old)
    return 0
