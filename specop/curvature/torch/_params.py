"""Parameter selection, flattening, exact restore of a module's state, and the kernels of a call.

The operators act on a flat vector ``theta`` made of the selected parameters in
the order of ``model.named_parameters()``; the unselected parameters and the
buffers are held fixed. Every call switches the model to the operator's mode and
restores the training flags, BatchNorm settings and buffers exactly afterwards
(:func:`model_state`), and runs under :func:`kernels`: scaled-dot-product attention
on its math kernel (the fused CPU/CUDA kernels have no double-backward), the
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` inference fast path off, and
sparse embeddings computing dense gradients; all three restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["select_params", "model_state", "kernels", "call_scope", "unflatten"]


def select_params(model: nn.Module, params: Sequence[Any] | None) -> list[str]:
    """Names of the selected parameters, in ``model.named_parameters()`` order.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    params : None or sequence of str or torch.nn.Parameter
        ``None``: every parameter with ``requires_grad``; otherwise parameter
        names or the parameter tensors themselves.

    Raises
    ------
    ValueError
        A name or tensor that is not a parameter of ``model``, a duplicate, or an
        empty selection.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
        if not names:
            raise ValueError("params: the model has no trainable parameters (requires_grad=True)")
        return names
    if isinstance(params, (torch.Tensor, str)) or not isinstance(params, Sequence):
        raise TypeError(f"params: expected None or a list of parameter names or tensors, got {type(params).__name__}")
    if len(params) == 0:
        raise ValueError("params: expected at least one parameter, got an empty list")
    by_id = {id(p): n for n, p in named.items()}
    chosen: set[str] = set()
    for i, p in enumerate(params):
        if isinstance(p, str):
            if p not in named:
                shown = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
                raise ValueError(f"params[{i}]: {p!r} is not a parameter name of the model (names: {shown})")
            name = p
        elif isinstance(p, torch.Tensor):
            if id(p) not in by_id:
                raise ValueError(f"params[{i}]: the tensor of shape {tuple(p.shape)} is not a parameter of the model")
            name = by_id[id(p)]
        else:
            raise TypeError(f"params[{i}]: expected a parameter name or tensor, got {type(p).__name__}")
        if name in chosen:
            raise ValueError(f"params[{i}]: parameter {name!r} is selected twice")
        chosen.add(name)
    return [n for n in named if n in chosen]


def unflatten(v: torch.Tensor, shapes: Sequence[torch.Size]) -> tuple[torch.Tensor, ...]:
    """Split a flat vector into tensors of ``shapes`` (views, no copy)."""
    sizes = [s.numel() for s in shapes]
    return tuple(part.view(shape) for part, shape in zip(torch.split(v, sizes), shapes, strict=True))


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@contextlib.contextmanager
def model_state(model: nn.Module, mode: str, seed: int | None = None) -> Iterator[None]:
    """Put ``model`` in ``mode`` for the duration of a call; restore its state exactly.

    ``mode="eval"``: ``model.eval()`` (running statistics, no dropout).
    ``mode="train"``: ``model.train()`` with ``track_running_stats`` switched off on
    every BatchNorm/InstanceNorm module, so normalisation uses the batch statistics
    and the running statistics are never updated (an in-place update would also
    break ``torch.func``). The global torch RNG is forked (and seeded by the caller
    per batch, see :meth:`CurvatureOperator._forward`), so dropout does not disturb
    the user's random stream.

    On exit, in all cases: every module's ``training`` flag, every norm's
    ``track_running_stats`` and the values of every buffer are put back.
    """
    flags = [(m, m.training) for m in model.modules()]
    tracking = [(m, m.track_running_stats) for m in model.modules() if isinstance(m, _NORMS)]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = sorted({b.device for b in [*model.parameters(), *model.buffers()] if b.device.type == "cuda"},
                     key=str)
    try:
        with torch.random.fork_rng(devices=devices, enabled=(mode == "train")):
            model.train(mode == "train")
            if mode == "train":
                for norm, _ in tracking:
                    norm.track_running_stats = False
            yield
    finally:
        for m, flag in flags:
            m.training = flag
        for norm, flag in tracking:
            norm.track_running_stats = flag
        with torch.no_grad():
            for b, saved in buffers:
                if not torch.equal(b, saved):  # untouched buffers keep their version counters (graph caches)
                    b.copy_(saved)


@contextlib.contextmanager
def kernels(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with kernels that have every derivative the operators need; restore afterwards.

    * ``torch.nn.functional.scaled_dot_product_attention`` uses the math kernel (composed of
      differentiable ops; the flash / memory-efficient kernels have no double backward), so
      ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and Hugging Face attention work
      and draw their attention dropout the same way in every call;
    * the ``torch.backends.mha`` fast path (an inference kernel without derivatives, taken in
      eval mode when no parameter needs a gradient) is off, so every call takes the path of training;
    * ``nn.Embedding`` / ``nn.EmbeddingBag`` with ``sparse=True`` compute dense gradients (the same
      numbers; sparse gradients cannot be differentiated again).
    """
    sparse = [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse]
    fast = torch.backends.mha.get_fastpath_enabled()
    try:
        for m in sparse:
            m.sparse = False
        torch.backends.mha.set_fastpath_enabled(False)
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for m in sparse:
            m.sparse = True


@contextlib.contextmanager
def call_scope(model: nn.Module, mode: str) -> Iterator[None]:
    """:func:`model_state` and :func:`kernels` together: the setting of every pass over the data."""
    with model_state(model, mode), kernels(model):
        yield
