"""Build the curvature operators the ``specop`` command analyses.

The embedded digits MLP (:mod:`specop.cli.digits`) or a user factory given as
``--model package.module:factory`` (or ``path/to/file.py:factory``). A torch factory
returns ``(model, loss_fn, data)``; a JAX factory returns ``(loss_fn, params, data)``
(Hessian only; ``loss_fn(params, batch)``) or ``(loss_fn, params, data, model_fn)``
(then ``loss_fn(outputs, targets)`` is the loss on the model's outputs, as for torch,
and the Gauss-Newton matrix is available too).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "Problem", "build_problem", "load_factory"]


class UsageError(Exception):
    """A bad argument or a bad factory: reported as one line, exit code 2."""


@dataclass
class Problem:
    """The operators of one model and what the report says about it."""

    H: Any
    G: Any | None
    info: dict[str, Any] = field(default_factory=dict)


def load_factory(spec: str) -> Any:
    """The callable named by ``module:attr`` or ``file.py:attr``."""
    if ":" not in spec:
        raise UsageError(f"--model: expected 'package.module:factory' or 'file.py:factory', got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
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
    except (ImportError, SyntaxError) as exc:
        raise UsageError(f"--model: cannot import {mod_name!r}: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise UsageError(f"--model: {mod_name!r} has no callable named {attr!r}")
    return fn


def _torch_problem(args: Any, result: Any) -> Problem:
    import torch

    from specop.curvature.torch import GGNOperator, HessianOperator

    if not isinstance(result, tuple) or len(result) != 3:
        raise UsageError(f"--model: a torch factory must return (model, loss_fn, data), got {_describe(result)}")
    model, loss_fn, data = result
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model: the factory's first item must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise UsageError(f"--model: the factory's loss_fn must be callable, got {type(loss_fn).__name__}")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        data = tuple(data)
        if args.distributed:  # rank r of W keeps samples r, r + W, r + 2W, ...
            import torch.distributed as dist

            rank, world = dist.get_rank(), dist.get_world_size()
            data = (data[0][rank::world], data[1][rank::world])
    elif isinstance(data, torch.Tensor) or not hasattr(data, "__iter__"):
        raise UsageError(f"--model: data must be an (X, y) tuple of tensors or an iterable of batches, "
                         f"got {type(data).__name__}")
    if args.device:
        model = model.to(args.device)
        if isinstance(data, tuple):
            data = tuple(t.to(args.device) for t in data)
    if args.distributed:
        _broadcast_model(model)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    H = HessianOperator(model, loss_fn, data, dtype=dtype)
    G = GGNOperator(model, loss_fn, data, dtype=dtype)
    info = {"backend": "torch", "num_params": H.shape[0], "dtype": str(H.dtype).replace("torch.", ""),
            "loss": float(H.loss())}
    return Problem(H, G, info)


def _broadcast_model(model: Any) -> None:
    """Give every rank rank 0's parameters and buffers (a factory may initialise without a seed)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def _jax_problem(args: Any, result: Any) -> Problem:
    if args.distributed:
        raise UsageError("--distributed: only the torch backend is supported (JAX shards with jax.distributed)")
    try:
        from specop.curvature.jax import GGNOperator, HessianOperator
    except ImportError as exc:
        raise UsageError(f"--backend jax: the JAX curvature operators are not available ({exc})") from exc
    if not isinstance(result, tuple) or len(result) not in (3, 4):
        raise UsageError("--model: a JAX factory must return (loss_fn, params, data) or "
                         f"(loss_fn, params, data, model_fn), got {_describe(result)}")
    loss_fn, params, data = result[:3]
    model_fn = result[3] if len(result) == 4 else None
    if not callable(loss_fn) or (model_fn is not None and not callable(model_fn)):
        raise UsageError("--model: a JAX factory's loss_fn (and model_fn) must be callable")
    if model_fn is None:
        H, G = HessianOperator(loss_fn, params, data), None
    else:
        H = HessianOperator(loss_fn, params, data, model_fn=model_fn)
        G = GGNOperator(model_fn, loss_fn, params, data)
    info = {"backend": "jax", "num_params": H.shape[0], "dtype": str(H.dtype)}
    return Problem(H, G, info)


def _describe(x: Any) -> str:
    if isinstance(x, tuple):
        return f"a tuple of {len(x)} ({', '.join(type(v).__name__ for v in x)})"
    return f"a {type(x).__name__}"


def build_problem(args: Any) -> Problem:
    """Operators for the parsed command line ``args`` (see :mod:`specop.cli.parser`)."""
    if args.model is None:
        if args.backend == "jax":
            raise UsageError("--backend jax needs --model (the embedded digits model is a torch model)")
        from specop.cli.digits import digits_problem

        result = digits_problem(seed=args.seed, train_steps=args.train_steps, dtype=args.dtype or "float64")
        problem = _torch_problem(args, result)
        problem.info.update(model="digits MLP 64-64-10 tanh", train_steps=args.train_steps,
                            num_samples=1797, classes=10)
        return problem
    factory = load_factory(args.model)
    try:
        result = factory()
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"--model: the factory {args.model} raised {type(exc).__name__}: {exc}") from exc
    backend = args.backend
    if backend is None:
        first = result[0] if isinstance(result, tuple) and result else None
        backend = "torch" if type(first).__module__.startswith("torch") or _is_module(first) else "jax"
    problem = _torch_problem(args, result) if backend == "torch" else _jax_problem(args, result)
    problem.info["model"] = args.model
    return problem


def _is_module(x: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(x, torch.nn.Module)
