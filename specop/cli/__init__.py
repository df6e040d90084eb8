"""The ``specop`` command: spectral analysis of a model's Hessian and Gauss-Newton matrices.

``specop`` (or ``specop report``) trains the embedded digits MLP
(:mod:`specop.cli.digits`) and prints a table, writes a PNG and a JSON; ``specop top``,
``specop density`` and ``specop trace`` run one algorithm. See ``specop --help`` and
the docs page "Command line".

Exit codes: 0 success, 2 bad arguments or a bad ``--model`` factory (one line, no
traceback unless ``--debug``), 130 interrupted (Ctrl-C / SIGTERM; finished work stays
in ``--checkpoint``).

With ``--distributed`` (under ``torchrun``) every rank runs the same command on its
shard of the data; rank 0 alone prints, writes the JSON and PNG and owns the
``--checkpoint`` directory (the other ranks receive its stored stages and density
checkpoints by broadcast, so all ranks resume from the same state).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
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


_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _init_distributed(args: Any) -> tuple[int, int, bool]:
    """Join the ``torchrun`` process group; returns ``(rank, world_size, initialised_here)``.

    A CUDA ``--device`` without an index becomes ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    from specop.cli.problem import UsageError

    if args.backend == "jax":
        raise UsageError("--distributed: only the torch backend is supported (JAX shards with jax.distributed)")
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    missing = [v for v in _TORCHRUN_ENV if not os.environ.get(v)]
    if missing:
        raise UsageError(f"--distributed needs torchrun's environment ({', '.join(missing)} not set); "
                         "run: torchrun --nproc_per_node=N -m specop ... --distributed")
    cuda = (args.device or "").startswith("cuda")
    if cuda:
        if args.device == "cuda":
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(args.device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _rank_store(base: type, path: str | None, settings: dict[str, Any], rank: int) -> Any:
    """A ``StageStore`` whose directory only rank 0 reads and writes; other ranks get its contents."""

    class RankStore(base):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            error = None
            if rank == 0:
                try:
                    super().__init__(path, settings)
                except Exception as exc:  # the same refusal on every rank, not a hang
                    error = exc
            else:
                self.path = None if path is None else Path(path)
                self._scratch = tempfile.mkdtemp(prefix=f"specop-rank{rank}-") if path is not None else None
            error = _broadcast(error)
            if error is not None:
                raise error

        def file(self, name: str) -> str | None:
            if self.path is None:
                return None
            stored = self.path / f"{name}.npz"
            data = _broadcast(stored.read_bytes() if rank == 0 and stored.exists() else None)
            if rank == 0:
                return str(stored)
            local = Path(self._scratch) / f"{name}.npz"  # a private copy of rank 0's checkpoint
            if data is not None:
                local.write_bytes(data)
            return str(local)

        def stage(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            if self.path is None:
                return super().stage(name, compute)
            stored = _broadcast(super().stage(name, lambda: None) if rank == 0 and self.has(name) else None)
            if stored is not None:
                return stored
            if rank == 0:
                return super().stage(name, compute)
            return json.loads(json.dumps(compute()))

        def has(self, name: str) -> bool:
            return self.path is not None and (self.path / f"{name}.json").exists()

        def close(self) -> None:
            if getattr(self, "_scratch", None):
                shutil.rmtree(self._scratch, ignore_errors=True)

    return RankStore()


def run(args: Any) -> dict[str, Any]:
    """Run a parsed command; returns the JSON document (also written to ``--output``).

    With ``--distributed`` every rank returns the document; only rank 0 writes it.
    """
    from specop.cli import jobs

    settings = _settings(args)  # before --distributed picks this rank's device
    if not args.distributed:
        return _run(args, settings, jobs.StageStore(args.checkpoint, settings), 0)
    rank, world, owned = _init_distributed(args)
    settings["world_size"] = world
    try:
        store = _rank_store(jobs.StageStore, args.checkpoint, settings, rank)
        try:
            return _run(args, settings, store, rank)
        finally:
            store.close()
    finally:
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(args: Any, settings: dict[str, Any], store: Any, rank: int) -> dict[str, Any]:
    from specop.cli import jobs
    from specop.cli.output import UI, plot_density, plot_report, print_table, write_json
    from specop.cli.problem import build_problem

    ui = UI(quiet=args.quiet or rank != 0)
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
