"""Build the curvature operators the ``specop`` command analyses.

The embedded digits MLP (:mod:`specop.cli.digits`) or a user factory given as
``--model package.module:factory`` (or ``path/to/file.py:factory``). A torch factory
returns ``(model, loss_fn, data)``; a JAX factory returns ``(loss_fn, params, data)``
(Hessian only; ``loss_fn(params, batch)``) or ``(loss_fn, params, data, model_fn)``
(then ``loss_fn(outputs, targets)`` is the loss on the model's outputs, as for torch,
and the Gauss-Newton matrix is available too).

Before any work the factory's values are checked (their kinds and order, finite data,
integer class labels for a cross-entropy loss), the loss is evaluated and every operator
the command uses computes one product with two fixed probes
(:func:`specop.linalg.checkpoint.operator_probe`: the fingerprint the checkpoint stores).
A failure there, in the user's model, loss or data, is a one-line ``UsageError``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specop.cli.checks import check_jax_data, check_torch_data, finite_number
from specop.cli.errors import UsageError, cli_names, is_collective_failure, is_out_of_memory, one_line

__all__ = ["UsageError", "Problem", "build_problem", "load_factory", "probe_operators"]


@dataclass
class Problem:
    """The operators of one model and what the report says about it."""

    H: Any
    G: Any | None
    info: dict[str, Any] = field(default_factory=dict)
    label: str = "the model"


def load_factory(spec: str) -> Any:
    """The callable named by ``module:attr`` or ``file.py:attr``."""
    mod_name, _, attr = spec.rpartition(":")
    if ":" not in spec or not mod_name or not attr:
        raise UsageError(f"--model: expected 'package.module:factory' or 'file.py:factory', got {spec!r}")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise UsageError(f"--model: file {mod_name!r} does not exist")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loaded)  # type: ignore[arg-type]
            loaded.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except UsageError:
        raise
    except (ImportError, SyntaxError) as exc:
        raise UsageError(f"--model: cannot import {mod_name!r}: {type(exc).__name__}: {one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:  # the user's module raised (or exited) while it was imported
        raise UsageError(f"--model: importing {mod_name!r} raised {type(exc).__name__}: {one_line(exc)}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise UsageError(f"--model: {mod_name!r} has no callable named {attr!r}")
    return fn


def _describe(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"({', '.join(type(v).__name__ for v in x)})"
    return f"a {type(x).__name__}"


def _leaf_types(x: Any, depth: int = 0) -> list[Any]:
    if depth < 4 and isinstance(x, (tuple, list)):
        return [t for v in x for t in _leaf_types(v, depth + 1)]
    if depth < 4 and isinstance(x, dict):
        return [t for v in x.values() for t in _leaf_types(v, depth + 1)]
    return [x]


def _framework(result: tuple[Any, ...]) -> str | None:
    """"torch" or "jax" when the factory's values hold that framework's objects, else None."""
    leaves = _leaf_types(result)
    if "torch" in sys.modules:
        import torch

        if any(isinstance(v, (torch.nn.Module, torch.Tensor)) for v in leaves):
            return "torch"
        if any(isinstance(v, torch.utils.data.DataLoader) for v in leaves):
            return "torch"
    if "jax" in sys.modules:
        import jax

        if any(isinstance(v, jax.Array) for v in leaves):
            return "jax"
    return None


_EXPECTED = "a torch (model, loss_fn, data) or a JAX (loss_fn, params, data[, model_fn]) tuple"


def _torch_role(x: Any) -> str:
    import torch

    if isinstance(x, torch.nn.modules.loss._Loss):
        return "loss_fn"
    if isinstance(x, torch.nn.Module):
        return "model" if any(True for _ in x.parameters()) else "loss_fn"
    if callable(x):
        return "loss_fn"
    return "data"


def _torch_values(result: tuple[Any, ...], label: str) -> tuple[Any, Any, Any]:
    import torch

    if len(result) != 3:
        raise UsageError(f"{label}: a torch factory must return (model, loss_fn, data), got {_describe(result)}")
    roles = [_torch_role(x) for x in result]
    if roles != ["model", "loss_fn", "data"] and sorted(roles) == ["data", "loss_fn", "model"]:
        raise UsageError(f"{label}: the factory returned ({', '.join(roles)}) = {_describe(result)}; a torch "
                         "factory returns (model, loss_fn, data) in this order")
    model, loss_fn, data = result
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{label}: the factory's first item must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise UsageError(f"{label}: the factory's loss_fn must be callable, got {type(loss_fn).__name__}")
    return model, loss_fn, data


def _guard(label: str, step: str, fn: Callable[[], Any]) -> Any:
    """``fn()``; a failure of the user's model, loss or data becomes one line naming ``step``."""
    try:
        return fn()
    except UsageError:
        raise
    except Exception as exc:
        if is_collective_failure(exc) or is_out_of_memory(exc):
            raise
        text = cli_names(one_line(exc))
        kind = "" if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: "
        raise UsageError(f"{label}: {step} failed: {kind}{text}") from exc


def _torch_problem(args: Any, result: tuple[Any, ...], label: str) -> Problem:
    try:
        import torch

        from specop.curvature.torch import GGNOperator, HessianOperator
    except ImportError as exc:
        raise UsageError(f"--backend torch: the torch curvature operators are not available ({exc})") from exc
    model, loss_fn, data = _torch_values(result, label)
    check_torch_data(data, loss_fn, label)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        data = tuple(data)
        if args.distributed:  # rank r of W keeps samples r, r + W, r + 2W, ...
            import torch.distributed as dist

            rank, world = dist.get_rank(), dist.get_world_size()
            data = (data[0][rank::world], data[1][rank::world])
    if args.device:
        model = model.to(args.device)
        if isinstance(data, tuple):
            data = tuple(t.to(args.device) for t in data)
    if args.distributed:
        _broadcast_model(model)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    kw = {"dtype": dtype} if args.timeout is None else {"dtype": dtype, "timeout": args.timeout}
    H = _guard(label, "building the Hessian operator", lambda: HessianOperator(model, loss_fn, data, **kw))
    G = _guard(label, "building the Gauss-Newton operator", lambda: GGNOperator(model, loss_fn, data, **kw))
    loss = _guard(label, "evaluating the loss on the data", lambda: float(H.loss()))
    finite_number(loss, "the loss", label)
    info = {"backend": "torch", "num_params": H.shape[0], "dtype": str(H.dtype).replace("torch.", ""), "loss": loss}
    return Problem(H, G, info, label)


def _broadcast_model(model: Any) -> None:
    """Give every rank rank 0's parameters and buffers (a factory may initialise without a seed)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def _jax_problem(args: Any, result: tuple[Any, ...], label: str) -> Problem:
    if args.distributed:
        raise UsageError("--distributed: only the torch backend is supported (JAX shards with jax.distributed)")
    if args.device is not None:
        raise UsageError(f"--device {args.device}: applies to the torch backend only and this is a JAX factory; JAX "
                         "places arrays on its default device (choose it with JAX_PLATFORMS, e.g. JAX_PLATFORMS=cpu)")
    try:
        from specop.curvature.jax import GGNOperator, HessianOperator
    except ImportError as exc:
        raise UsageError(f"--backend jax: the JAX curvature operators are not available ({exc})") from exc
    if len(result) not in (3, 4):
        raise UsageError(f"{label}: a JAX factory must return (loss_fn, params, data) or "
                         f"(loss_fn, params, data, model_fn), got {_describe(result)}")
    loss_fn, params, data = result[:3]
    model_fn = result[3] if len(result) == 4 else None
    if not callable(loss_fn) or (model_fn is not None and not callable(model_fn)) or callable(params):
        raise UsageError(f"{label}: the factory returned {_describe(result)}; a JAX factory returns (loss_fn, params, "
                         "data[, model_fn]) in this order, loss_fn and model_fn callable, params a pytree of arrays")
    check_jax_data(data, label)
    kw = {} if args.dtype is None else {"dtype": args.dtype}
    if model_fn is None:
        H = _guard(label, "building the Hessian operator", lambda: HessianOperator(loss_fn, params, data, **kw))
        G = None
    else:
        H = _guard(label, "building the Hessian operator",
                   lambda: HessianOperator(loss_fn, params, data, model_fn=model_fn, **kw))
        G = _guard(label, "building the Gauss-Newton operator",
                   lambda: GGNOperator(model_fn, loss_fn, params, data, **kw))
    loss = _guard(label, "evaluating the loss on the data", lambda: float(H.loss()))
    finite_number(loss, "the loss", label)
    info = {"backend": "jax", "num_params": H.shape[0], "dtype": str(H.dtype), "loss": loss}
    return Problem(H, G, info, label)


def build_problem(args: Any) -> Problem:
    """Operators for the parsed command line ``args`` (see :mod:`specop.cli.parser`), checked."""
    if args.model is None:
        if args.backend == "jax":
            raise UsageError("--backend jax needs --model (the embedded digits model is a torch model)")
        from specop.cli.digits import digits_problem

        result = digits_problem(seed=args.seed, train_steps=args.train_steps, dtype=args.dtype or "float64")
        problem = _torch_problem(args, result, "the embedded digits model")
        problem.info.update(model="digits MLP 64-64-10 tanh", train_steps=args.train_steps,
                            num_samples=1797, classes=10)
        return problem
    label = f"--model {args.model}"
    factory = load_factory(args.model)
    try:
        result = factory()
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:
        if is_out_of_memory(exc):
            raise
        raise UsageError(f"{label}: the factory raised {type(exc).__name__}: {one_line(exc)}") from exc
    if not isinstance(result, (tuple, list)):
        got = "None (a missing return statement?)" if result is None else _describe(result)
        raise UsageError(f"{label}: the factory returned {got}; expected {_EXPECTED}")
    result = tuple(result)
    found = _framework(result)
    if args.backend is not None and found is not None and found != args.backend:
        raise UsageError(f"--backend {args.backend}: the factory returned {found} values {_describe(result)}; "
                         f"pass --backend {found} or leave --backend out")
    backend = args.backend or found
    if backend is None:
        raise UsageError(f"{label}: the factory returned {_describe(result)} holding no torch module or tensor "
                         f"and no JAX array; expected {_EXPECTED}")
    problem = _torch_problem(args, result, label) if backend == "torch" else _jax_problem(args, result, label)
    problem.info["model"] = args.model
    return problem


_NAMES = {"hessian": "Hessian", "ggn": "Gauss-Newton matrix"}


def probe_operators(problem: Problem, names: list[str]) -> dict[str, np.ndarray]:
    """:func:`~specop.linalg.checkpoint.operator_probe` of each named operator (``"hessian"``, ``"ggn"``), checked.

    The first products of the run: a model whose curvature product fails or is not
    finite is refused here, before any checkpoint is written.
    """
    from specop.linalg.checkpoint import operator_probe

    out = {}
    for name in names:
        A = problem.H if name == "hessian" else problem.G
        if A is None:
            raise UsageError(f"--operator {name}: this model has no Gauss-Newton operator (a JAX factory needs "
                             "model_fn)")
        what = f"a product with its {_NAMES[name]}"
        probe: np.ndarray = _guard(problem.label, what, functools.partial(operator_probe, A))
        bad = probe[~np.isfinite(probe)]
        if bad.size:
            finite_number(float(bad[0]), what, problem.label)
        out[name] = probe
    return out
