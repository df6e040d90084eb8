"""Which torch loss a ``loss_fn`` is: the built-in losses, their options and reduction.

Recognised: the modules ``nn.CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``L1Loss``,
``HuberLoss``, ``SmoothL1Loss``, ``BCELoss``, ``BCEWithLogitsLoss``, ``KLDivLoss`` (not a
subclass that overrides ``forward``: that is a user loss) and their ``torch.nn.functional``
forms, also in ``functools.partial`` with keyword options. Anything else is a user loss
(:class:`~specop.curvature.torch._losses.Loss`). A module's options are read on every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from specop.curvature.torch._losses import _MSE, _NLL, Builtin, Loss, _CrossEntropy, _KLDiv, _Weighted

__all__ = ["make_loss"]

_OPTIONS: dict[Callable[..., Any], tuple[str, ...]] = {
    F.cross_entropy: ("weight", "ignore_index", "label_smoothing"),
    F.nll_loss: ("weight", "ignore_index"),
    F.mse_loss: ("weight",),
    F.l1_loss: ("weight",),
    F.huber_loss: ("delta", "weight"),
    F.smooth_l1_loss: ("beta",),
    F.binary_cross_entropy_with_logits: ("weight", "pos_weight"),
    F.binary_cross_entropy: ("weight",),
    F.kl_div: ("log_target",),
}
_MODULES: dict[type[nn.Module], Callable[..., Any]] = {
    nn.CrossEntropyLoss: F.cross_entropy, nn.NLLLoss: F.nll_loss, nn.MSELoss: F.mse_loss, nn.L1Loss: F.l1_loss,
    nn.HuberLoss: F.huber_loss, nn.SmoothL1Loss: F.smooth_l1_loss, nn.BCELoss: F.binary_cross_entropy,
    nn.BCEWithLogitsLoss: F.binary_cross_entropy_with_logits, nn.KLDivLoss: F.kl_div,
}


_CLASSES: dict[Callable[..., Any], type[Builtin]] = {
    F.cross_entropy: _CrossEntropy, F.nll_loss: _NLL, F.mse_loss: _MSE, F.l1_loss: _Weighted, F.kl_div: _KLDiv,
}


def _builtin(loss_fn: Any) -> tuple[Callable[..., Any], dict[str, Any], str] | None:
    """``(function, options, reduction)`` of a recognised torch loss, else ``None``."""
    for cls, fn in _MODULES.items():
        if isinstance(loss_fn, cls):
            if type(loss_fn).forward is not cls.forward:  # a subclass with its own forward: a user loss
                return None
            return fn, {k: getattr(loss_fn, k) for k in _OPTIONS[fn] if hasattr(loss_fn, k)}, str(loss_fn.reduction)
    base = loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn
    if not any(base is fn for fn in _OPTIONS):
        return None
    if not isinstance(loss_fn, functools.partial):
        return base, {}, "mean"
    if loss_fn.args:
        raise ValueError(f"loss_fn: functools.partial of {base.__name__} with positional arguments; "
                         "pass its options as keywords")
    kw = dict(loss_fn.keywords)
    legacy = {"size_average", "reduce"} & set(kw)
    if legacy:
        raise ValueError(f"loss_fn: {sorted(legacy)} are deprecated torch options; use reduction='mean' or 'sum'")
    reduction = kw.pop("reduction", "mean")
    unknown = set(kw) - set(_OPTIONS[base])
    if unknown:
        raise ValueError(f"loss_fn: unknown options {sorted(unknown)} for {base.__name__}")
    return base, kw, reduction


def make_loss(loss_fn: Any, loss_on_batch: bool = False) -> Loss:
    """The :class:`Loss` for ``loss_fn``; ``ValueError`` for ``reduction='none'`` (or another bad reduction)."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (outputs, targets) -> loss, got {type(loss_fn).__name__}")
    found = _builtin(loss_fn)
    if found is None:
        return Loss(loss_fn)
    fn, options, reduction = found
    if loss_on_batch:
        raise ValueError(f"loss_on_batch=True: {fn.__name__} takes (outputs, targets), not the batch; "
                         "pass targets=lambda batch: ... instead")
    module = loss_fn if isinstance(loss_fn, nn.Module) else None  # its options are read on every call
    return _CLASSES.get(fn, Builtin)(fn, options, _checked(fn, reduction), module, _OPTIONS[fn],
                                     functools.partial(_checked, fn))


def _checked(fn: Callable[..., Any], reduction: str) -> str:
    allowed = ("mean", "sum", "batchmean") if fn is F.kl_div else ("mean", "sum")
    if reduction not in allowed:
        extra = " (the operators need the loss's sum and its normalizer)" if reduction == "none" else ""
        raise ValueError(f"loss_fn: reduction={reduction!r} is not supported{extra}; use "
                         + " or ".join(repr(r) for r in allowed))
    return reduction

