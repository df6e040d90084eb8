"""How the ``specop`` command reports a failure: one line on stderr and an exit code.

- ``UsageError`` (exit 2): something the user passed or wrote is wrong: an argument, a
  path, the ``--model`` factory, its model or data, a checkpoint directory. Raised before
  any work is done wherever it can be detected then.
- ``RunError`` (exit 1): the arguments are fine but the run could not finish: a peer of
  ``--distributed`` stopped answering within ``--timeout`` or died, the machine ran out
  of memory, an output could not be written.

:func:`classify` maps any exception to ``(exit code, message)``; ``None`` means an
unexpected exception (a bug in specop), which keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["UsageError", "RunError", "one_line", "cli_names", "is_collective_failure", "is_out_of_memory",
           "classify"]


class UsageError(Exception):
    """A bad argument, path, factory, model, data or checkpoint: one line, exit code 2."""


class RunError(Exception):
    """The run failed for a reason outside the arguments: one line, exit code 1."""


def one_line(exc: BaseException | str, limit: int = 400) -> str:
    """The first non-empty line of ``exc``'s message (its type name when empty), at most ``limit`` chars."""
    text = str(exc)
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    if not isinstance(exc, str) and not line:
        line = type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: Library argument names and the options of the command that set them.
_OPTIONS = {"num_probes": "--probes", "k": "--k", "tol": "--tol", "steps": "--steps", "degree": "--steps",
            "seed": "--seed", "dtype": "--dtype", "which": "--which", "reorth": "--reorth", "method": "--method",
            "timeout": "--timeout"}


def cli_names(message: str) -> str:
    """A library message ``"num_probes: expected ..."`` in the command's terms: ``"--probes: expected ..."``."""
    m = re.match(r"(\w+):", message)
    if m and m.group(1) in _OPTIONS:
        return _OPTIONS[m.group(1)] + message[m.end(1):]
    return message


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) comes from a ``torch.distributed`` collective (timeout, dead peer)."""
    for e in _chain(exc):
        if type(e).__module__.startswith("torch.distributed") or type(e).__name__.startswith("Dist"):
            return True
        text = str(e)
        if "torch.distributed" in text or "gloo" in text.lower() or "nccl" in text.lower():
            return True
        tb = e.__traceback__
        while tb is not None:
            if "torch/distributed/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
                return True
            tb = tb.tb_next
    return False


def is_out_of_memory(exc: BaseException) -> bool:
    """``MemoryError``, torch's CUDA ``OutOfMemoryError``, a failed torch CPU allocation, JAX's RESOURCE_EXHAUSTED."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "RESOURCE_EXHAUSTED" in text
                                              or "out of memory" in text.lower())


def classify(exc: BaseException, args: Any) -> tuple[int, str] | None:
    """``(exit code, one-line message)`` for a failure of the command, or None for a bug (keep the traceback)."""
    from specop import NonFiniteError

    if isinstance(exc, UsageError):
        return 2, one_line(exc, 1000)
    if isinstance(exc, RunError):
        return 1, one_line(exc, 1000)
    if getattr(args, "distributed", False) and is_collective_failure(exc):
        import os

        where = f"rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}"
        return 1, (f"--distributed ({where}): a peer did not answer within --timeout {args.timeout:g} s or died "
                   f"({one_line(exc, 300)}); see the other ranks' errors")
    if is_out_of_memory(exc):
        return 1, (f"out of memory ({type(exc).__name__}: {one_line(exc, 200)}); lower --probes, --k or --steps, "
                   "or pass --dtype float32")
    if isinstance(exc, NonFiniteError):
        return 2, f"the model's curvature is not finite: {one_line(exc)}"
    if isinstance(exc, (ValueError, TypeError)):
        return 2, cli_names(one_line(exc))
    if isinstance(exc, OSError):
        name = f"{exc.filename}: " if exc.filename else ""
        return 1, f"{name}{exc.strerror or one_line(exc)}"
    return None
