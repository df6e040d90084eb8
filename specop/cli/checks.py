"""Checks the ``specop`` command runs before any work, so that a bad input costs seconds, not a run.

Every check raises :class:`~specop.cli.errors.UsageError` naming the option and what
was expected, and creates nothing: a path is tested by creating and removing one
temporary file in the nearest existing directory (which also catches read-only file
systems, where ``os.access`` says yes to root).
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from specop.cli.errors import UsageError, one_line

__all__ = ["check_options", "check_output", "check_checkpoint_path", "check_device", "check_torch_data",
           "check_jax_data", "finite_number", "writes_png"]


def writes_png(args: Any) -> bool:
    """Whether the command writes a PNG beside its JSON."""
    return bool(args.command in ("report", "density"))


def check_options(args: Any) -> None:
    """Combinations of options that cannot work or would be silently ignored; resolves the defaults they share."""
    if args.model is None:
        args.train_steps = 300 if args.train_steps is None else args.train_steps
    elif args.train_steps is not None:
        raise UsageError("--train-steps: applies to the embedded digits model only, not to --model")
    if args.distributed:
        args.timeout = 300.0 if args.timeout is None else args.timeout
    elif args.timeout is not None:
        raise UsageError("--timeout: bounds the collectives of --distributed; it has no effect without it")
    if args.command == "report" and args.which != "LA":
        raise UsageError(f"--which {args.which}: the report analyses the largest eigenvalues (LA) and their "
                         "outliers; use 'specop top --which ...' for the other ends")
    if hasattr(args, "reorth"):
        if args.method != "slq" and args.reorth is not None:
            raise UsageError(f"--reorth: applies to --method slq only (--method {args.method} runs no Lanczos)")
        if args.method == "slq" and args.reorth is None:
            args.reorth = "full"
    if args.command == "trace" and args.method == "hutch++" and args.probes < 3:
        raise UsageError(f"--probes {args.probes}: hutch++ needs at least 3 probes (a third sketch the top "
                         "subspace); use more probes or --method hutchinson")
    if args.backend == "jax" and args.device is not None:
        raise UsageError("--device: applies to the torch backend only; JAX places arrays on its default device "
                         "(choose it with JAX_PLATFORMS, e.g. JAX_PLATFORMS=cpu)")
    if args.model is None and importlib.util.find_spec("sklearn") is None:
        raise UsageError("the embedded digits model needs scikit-learn: pip install 'specop[cli]' (or pass --model)")
    if writes_png(args) and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"specop {args.command} writes a PNG and needs matplotlib: pip install 'specop[cli]'")


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _cannot_write_in(directory: Path) -> str | None:
    """None if a file can be created in ``directory``, otherwise the reason."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".specop-write-test-")
    except OSError as exc:
        return exc.strerror or one_line(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def _check_creatable(option: str, text: str, path: Path) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable directory."""
    anc = _nearest_existing(path)
    if not anc.is_dir():
        raise UsageError(f"{option} {text}: {anc} is a file, not a directory")
    reason = _cannot_write_in(anc)
    if reason:
        raise UsageError(f"{option} {text}: cannot create files in {anc} ({reason})")


def check_output(args: Any) -> None:
    """``--output`` (and the PNG beside it) can be written: not a directory, under a writable directory."""
    text = args.output if args.output is not None else f"specop-{args.command}.json"
    if not text.strip():
        raise UsageError("--output: expected a file path, got an empty string")
    path = Path(text)
    targets = [path]
    if writes_png(args):
        if path.suffix.lower() == ".png":
            raise UsageError(f"--output {text}: the PNG is written beside the JSON with the same stem, so the "
                             "JSON path must not end in .png (e.g. --output run.json writes run.json and run.png)")
        targets.append(path.with_suffix(".png"))
    for t in targets:
        if t.is_dir():
            raise UsageError(f"--output {text}: {t} is a directory; pass a file path such as "
                             f"{t / ('specop-' + args.command + '.json')}")
        if os.path.lexists(t) and not t.is_file():
            raise UsageError(f"--output {text}: {t} exists and is not a regular file")
    _check_creatable("--output", text, path.parent if str(path.parent) else Path("."))


def check_checkpoint_path(text: str) -> None:
    """``--checkpoint`` names a writable directory, or one that can be created."""
    if not text.strip():
        raise UsageError("--checkpoint: expected a directory path, got an empty string")
    path = Path(text)
    if os.path.lexists(path):
        if not path.is_dir():
            raise UsageError(f"--checkpoint {text}: is a file, not a directory; pass a directory path")
        reason = _cannot_write_in(path)
        if reason:
            raise UsageError(f"--checkpoint {text}: the directory is not writable ({reason})")
        return
    _check_creatable("--checkpoint", text, path)


def check_device(args: Any) -> None:
    """``--device`` names a torch device that exists on this machine."""
    if args.device is None or args.backend == "jax":
        return
    text = args.device
    try:
        import torch
    except ImportError:
        raise UsageError("--device: needs torch (pip install 'specop[torch]')") from None
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device: expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if dev.type == "meta":
        raise UsageError("--device meta: meta tensors hold no values; pass cpu or a GPU")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: no CUDA GPU is available to torch (torch.cuda.is_available() "
                             "is False); pass --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"--device {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    try:
        torch.empty(1, device=dev)
    except Exception as exc:  # not compiled in, no driver, ...
        raise UsageError(f"--device {text}: not usable by torch here ({one_line(exc, 200)})") from None


def _leaves(obj: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``(where, leaf)`` of a pytree of tuples, lists and mappings."""
    if depth < 8 and isinstance(obj, (tuple, list)):
        for i, x in enumerate(obj):
            yield from _leaves(x, f"{path}[{i}]", depth + 1)
    elif depth < 8 and isinstance(obj, Mapping):
        for k, x in obj.items():
            yield from _leaves(x, f"{path}[{k!r}]", depth + 1)
    else:
        yield path, obj


def _torch_batches(data: Any) -> Iterator[tuple[str, Any]]:
    import torch

    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        yield "data", data
    elif isinstance(data, Iterable) and not isinstance(data, (Iterator, torch.Tensor, str, bytes)):
        for i, batch in enumerate(data):
            yield f"data batch {i}", batch
    # a one-shot iterator or a non-iterable: the operator refuses it with its own message


def _class_labels(loss_fn: Any) -> tuple[str, int] | None:
    """``(name, ignore_index)`` when ``loss_fn`` takes integer class labels (cross-entropy, NLL)."""
    import functools

    import torch
    import torch.nn.functional as F  # noqa: N812

    base = loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn
    kw = loss_fn.keywords if isinstance(loss_fn, functools.partial) else {}
    if isinstance(base, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)):
        return type(base).__name__, int(base.ignore_index)
    if base is F.cross_entropy or base is F.nll_loss:
        return base.__name__, int(kw.get("ignore_index", -100))
    return None


def check_torch_data(data: Any, loss_fn: Any, label: str) -> None:
    """Every floating tensor of the data is finite; class labels of a cross-entropy/NLL loss are integers >= 0.

    One pass over the data, on the host only for the verdict of each tensor.
    """
    import torch

    labels = _class_labels(loss_fn)
    for where, batch in _torch_batches(data):
        pair = isinstance(batch, (tuple, list)) and len(batch) == 2
        for path, t in _leaves(batch, where):
            if pair:
                path = path.replace(f"{where}[0]", f"{where} X", 1).replace(f"{where}[1]", f"{where} y", 1)
            if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    raise UsageError(f"{label}: the factory's {path} holds {bad} NaN or Inf value(s) of {t.numel()}; "
                                     "the curvature of a loss on non-finite data is undefined")
        if labels is None or not isinstance(batch, (tuple, list)) or len(batch) != 2:
            continue
        y = batch[1]
        if not isinstance(y, torch.Tensor):
            continue
        name, ignore = labels
        if y.is_floating_point() and y.ndim <= 1:
            raise UsageError(f"{label}: the factory's labels ({where} y) are {str(y.dtype).replace('torch.', '')} "
                             f"of shape {tuple(y.shape)}, but {name} takes integer class indices: return y.long() "
                             "(or class probabilities of shape (N, C))")
        if not y.is_floating_point() and y.numel():
            neg = y[(y < 0) & (y != ignore)]
            if neg.numel():
                raise UsageError(f"{label}: the factory's labels ({where} y) hold negative class indices "
                                 f"(e.g. {int(neg[0])}); {name} takes classes 0..C-1")


def check_jax_data(data: Any, label: str) -> None:
    """Every floating array of a JAX data set (a pytree, or an iterable of pytrees) is finite."""
    import numpy as np

    batches = [("data", data)] if isinstance(data, (tuple, dict)) else \
        [(f"data batch {i}", b) for i, b in enumerate(data)] if isinstance(data, list) else [("data", data)]
    for where, batch in batches:
        for path, a in _leaves(batch, where):
            dtype = getattr(a, "dtype", None)
            if dtype is None or not hasattr(a, "shape"):
                continue
            if np.issubdtype(np.dtype(dtype), np.inexact):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(np.asarray(a))))
                if bad:
                    raise UsageError(f"{label}: the factory's {path} holds {bad} NaN or Inf value(s) of "
                                     f"{int(np.size(a))}; the curvature of a loss on non-finite data is undefined")


def finite_number(value: float, what: str, label: str) -> None:
    """``UsageError`` when ``value`` (the loss, an operator probe) is NaN or Inf."""
    if not math.isfinite(value):
        raise UsageError(f"{label}: {what} is {value} at the model's parameters (NaN or Inf parameters, or a "
                         "model or loss that overflows)")
