"""Batches of any structure, and how a batch becomes model outputs and loss targets.

A batch is any pytree: a tensor, a tuple, list or dict of them (also ``Mapping``
subclasses such as Hugging Face's ``BatchEncoding``), a dataclass or a namedtuple,
nested freely. Moving a batch to the operator walks the tree: tensors go to the
operator's device, floating ones are cast to its dtype, integer and boolean ones
(labels, token ids, masks) keep theirs; other leaves are left alone.

How a batch is used is said by three hooks, each with an ``(X, y)`` default:

* ``forward(model, batch) -> outputs`` (default ``model(batch[0])``);
* ``output``: which part of ``outputs`` the loss sees: ``None`` (the outputs are a
  tensor), an int or key (``output=0``, ``output="logits"``, also an attribute of a
  ``ModelOutput``), or a callable ``outputs -> tensor``;
* ``targets(batch) -> targets`` (default ``batch[1]``); with ``loss_on_batch=True`` the
  loss is called as ``loss_fn(outputs, batch)`` instead.

A hook that is not given needs an ``(X, y)`` pair; any other batch raises a
``ValueError`` naming the hook to pass. Nothing is guessed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import torch
from torch import nn

__all__ = ["map_tensors", "to_operator", "tensor_leaves", "is_batch", "check_pair", "Hooks", "validate"]


def map_tensors(tree: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``tree`` with ``fn`` applied to every tensor; containers keep their type (and attributes)."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        items = {k: map_tensors(v, fn) for k, v in tree.items()}
        if isinstance(tree, MutableMapping):  # dict, BatchEncoding, UserDict: a copy keeps the type and attributes
            out = copy.copy(tree)
            for k, v in items.items():
                out[k] = v
            return out
        try:
            return type(tree)(items)  # type: ignore[call-arg]
        except TypeError:
            return items
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(map_tensors(v, fn) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(v, fn) for v in tree)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(tree, **{f.name: map_tensors(getattr(tree, f.name), fn)
                                            for f in dataclasses.fields(tree) if f.init})
    return tree


def to_operator(tree: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``tree`` with its tensors on ``device`` and its floating tensors in ``dtype``; structure kept."""
    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=True)
        return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t

    return map_tensors(tree, move)


def tensor_leaves(tree: Any) -> list[torch.Tensor]:
    """The tensors of a pytree (same walk as :func:`to_operator`)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, Mapping):
        return [t for v in tree.values() for t in tensor_leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [t for v in tree for t in tensor_leaves(v)]
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return [t for f in dataclasses.fields(tree) for t in tensor_leaves(getattr(tree, f.name))]
    return []


def is_batch(data: Any) -> bool:
    """Whether ``data`` is one batch (not a collection of batches).

    One batch: a tuple of tensors (e.g. ``(X, y)``), a ``Mapping`` (dict, ``BatchEncoding``)
    or a dataclass instance. Anything else iterable (a list, a ``DataLoader``) is a
    collection of batches; wrap a single batch of another kind in a list.
    """
    if isinstance(data, tuple) and not hasattr(data, "_fields"):
        return len(data) > 0 and all(isinstance(t, torch.Tensor) for t in data)
    return isinstance(data, Mapping) or (dataclasses.is_dataclass(data) and not isinstance(data, type))


def check_pair(batch: Any, i: int, hook: str) -> tuple[Any, Any]:
    """``batch`` as an ``(X, y)`` pair, or a ``ValueError`` naming the missing ``hook``."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        kind = f"a {type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        raise ValueError(f"data batch {i}: expected an (X, y) pair, got {kind}; for other batches pass "
                         f"{hook} (see specop.curvature.torch.CurvatureOperator)")
    return batch[0], batch[1]


class _Call(nn.Module):
    """``forward(batch) = hook(model, batch)``: lets ``functional_call`` run any user forward."""

    def __init__(self, model: nn.Module, hook: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model = model
        self.hook = hook

    def forward(self, batch: Any) -> Any:
        return self.hook(self.model, batch)


def _default_forward(model: nn.Module, batch: Any) -> Any:
    return model(batch[0])  # the caller checked the pair


class Hooks:
    """The user's description of a batch: forward, output selector, targets, loss signature.

    Parameters
    ----------
    model : torch.nn.Module
        The model (wrapped, so that ``functional_call`` substitutes its parameters).
    forward, output, targets, loss_on_batch
        See the module docstring.
    """

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, Any], Any] | None = None,
                 output: Any = None, targets: Callable[[Any], Any] | None = None,
                 loss_on_batch: bool = False) -> None:
        for name, fn in (("forward", forward), ("targets", targets)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}: expected a callable or None, got {type(fn).__name__}")
        if not (output is None or callable(output) or isinstance(output, (int, str))) or isinstance(output, bool):
            raise TypeError(f"output: expected None, an int index, a str key or a callable, got {output!r}")
        if not isinstance(loss_on_batch, bool):
            raise TypeError(f"loss_on_batch: expected a bool, got {loss_on_batch!r}")
        if loss_on_batch and targets is not None:
            raise ValueError("targets: not used with loss_on_batch=True (the loss receives the whole batch); "
                             "pass one of them")
        self.forward, self.output, self.targets, self.loss_on_batch = forward, output, targets, loss_on_batch
        self.call = _Call(model, forward or _default_forward)
        self.pair = forward is None and (targets is None and not loss_on_batch)

    def prefix(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Parameter/buffer names of the model as names of the wrapper."""
        return {"model." + k: v for k, v in tensors.items()}

    def select(self, out: Any, i: int) -> torch.Tensor:
        """The tensor the loss sees, from what the forward returned."""
        sel = self.output
        if sel is None:
            picked = out
        elif callable(sel):
            picked = sel(out)
        else:
            try:
                picked = out[sel]
            except (KeyError, IndexError, TypeError) as exc:
                if isinstance(sel, str) and hasattr(out, sel):
                    picked = getattr(out, sel)
                else:
                    raise ValueError(f"output={sel!r}: cannot select it from the model's output of type "
                                     f"{type(out).__name__} (batch {i}): {exc}") from exc
        if not isinstance(picked, torch.Tensor):
            hint = "pass output= (an index, a key or a callable) to pick the tensor the loss sees" if sel is None \
                else "the selection must give a tensor"
            raise ValueError(f"model output (batch {i}): expected a tensor, got {type(picked).__name__}; {hint}")
        if picked.ndim == 0:
            raise ValueError(f"model output (batch {i}): expected a batch of outputs (first dimension: the samples), "
                             "got a 0-d tensor")
        return picked

    def targets_of(self, batch: Any, i: int) -> Any:
        """What the loss receives as its second argument."""
        if self.loss_on_batch:
            return batch
        if self.targets is not None:
            return self.targets(batch)
        return check_pair(batch, i, "targets=lambda batch: ... (or loss_on_batch=True)")[1]


def validate(batches: Iterable[Any], pair: bool) -> int:
    """Check every batch once (no model call); returns the number of batches.

    ``pair``: the default ``(X, y)`` form, whose tensors must agree in their first dimension.
    """
    count = 0
    for i, batch in enumerate(batches):
        count += 1
        if not pair:
            continue
        X, y = check_pair(batch, i, "forward= and targets= (or loss_on_batch=True)")
        for what, t in (("X", X), ("y", y)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"data batch {i}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
            raise ValueError(f"data batch {i}: X and y must have the same number of samples (first dimension), "
                             f"got X of shape {tuple(X.shape)} and y of shape {tuple(y.shape)}")
        if X.shape[0] == 0:
            raise ValueError(f"data batch {i}: the batch is empty (X of shape {tuple(X.shape)})")
    if count == 0:
        raise ValueError("data: the data set is empty (no batches)")
    return count
