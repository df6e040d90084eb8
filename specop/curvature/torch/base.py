r"""The base class of the PyTorch curvature operators: everything but the per-batch product.

**The matrix.** With batches ``b`` of the (local, then all processes') data, each batch's
loss read as a sum ``S_b(theta)`` and a normalizer ``Z_b`` (:mod:`specop.curvature._core`,
:mod:`._losses`), the operators are curvatures of the data-set loss

.. math::

    L(\theta) = \frac{\sum_b S_b(\theta)}{\sum_b Z_b}
    \qquad (L = \textstyle\sum_b S_b \text{ for } \texttt{reduction="sum"}),

e.g. ``C = sum_b C_b / sum_b Z_b`` with ``C_b`` the curvature of ``S_b``; :meth:`gradient`
and :meth:`loss` are ``nabla L`` and ``L``. A short last batch, padding (``ignore_index``),
class weights or shards of different sizes get their exact weight, and the result does not
depend on the batching (except through train-mode BatchNorm, whose statistics are per batch).

This class selects and flattens the parameters, reads the batches (any pytree, with the
``forward`` / ``output`` / ``targets`` hooks of :mod:`._batches`), switches the model's mode
and kernels and restores its state, checks vectors, accumulates ``sum_b`` and ``sum_b Z_b``
and all-reduces both in one collective under ``torch.distributed``. A subclass implements
only ``_matmat_batch(batch, M)``: the curvature of ``S_b`` times the columns of ``M``
``(P, k)``, for a :class:`Batch` passed as a value (the one-hook design of curvlinops;
Dangel et al., "Convolutions and more as einsum", 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from specop import backends
from specop.curvature import _core
from specop.curvature.torch import _batches, _data
from specop.curvature.torch._linear import Batching
from specop.curvature.torch._params import call_scope, select_params
from specop.curvature.torch._recognise import make_loss
from specop.operators.base import LinearOperator

__all__ = ["CurvatureOperator", "Batch", "Contribution"]

MODES = ("eval", "train")


@dataclass(frozen=True)
class Batch:
    """One batch of a pass, as the per-batch hook receives it.

    Attributes
    ----------
    index : int
        Position in the (local) pass.
    data : pytree
        The batch on the operator's device, floating tensors in its dtype.
    source : pytree
        The batch as the data gave it (its tensors identify it for caches).
    offset : int
        Global index of the batch's first sample (data order, lower ranks first): seeds the draws.
    fixed : mapping
        Tensors held fixed in this pass (unselected parameters, cast buffers), as ``functional_call`` names them.
    """

    index: int
    data: Any
    source: Any
    offset: int
    fixed: Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Contribution:
    """What a batch adds: ``value`` to the numerator, ``normalizer`` ``Z_b`` (None: summed loss), ``samples`` n_b."""

    value: torch.Tensor
    normalizer: torch.Tensor | None
    samples: int


def _send(gen: Any, samples: int) -> Batch | None:
    """The next batch of a pass, told how many samples the last one had; ``None`` at the end."""
    try:
        return gen.send(samples)
    except StopIteration:
        return None


def _torch_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or dtype in (torch.float32, torch.float64):
        return dtype
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)
    raise TypeError(f"dtype: expected None, 'float32', 'float64', torch.float32 or torch.float64, got {dtype!r}")


class CurvatureOperator(LinearOperator):
    r"""A ``P x P`` curvature matrix of the data-set loss ``L = sum_b S_b / sum_b Z_b`` of ``model`` over ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        The network ``f(x; theta)``; evaluated at its *current* parameters on every call.
    loss_fn : callable
        ``loss_fn(outputs, targets)``. A built-in torch loss (``nn.CrossEntropyLoss``, ``NLLLoss``,
        ``MSELoss``, ``BCEWithLogitsLoss``, ``BCELoss``, ``L1Loss``, ``SmoothL1Loss``, ``HuberLoss``,
        ``KLDivLoss``, their ``torch.nn.functional`` forms, also in ``functools.partial``) with
        ``reduction="mean"`` or ``"sum"`` (``"batchmean"`` for KL) is read exactly: its sum and
        the normalizer its mean divides by (class weights, ``ignore_index``, label smoothing,
        soft targets). Any other callable returns the batch mean over the ``B`` samples (the
        first dimension of the outputs), or a ``(sum, normalizer)`` pair. ``reduction="none"``
        and non-scalar returns are rejected (``ValueError``).
    data : batch, or re-iterable of batches
        One batch (a tuple of tensors such as ``(X, y)``, a dict / ``Mapping``, a dataclass) or
        a list / ``DataLoader`` of batches, each any pytree of tensors. Batches are moved to the
        operator's device; floating tensors are cast to its dtype, integer ones kept.
    params : None or list of str or tensors
        ``None``: all parameters with ``requires_grad``; otherwise the block of the
        named / given parameters (in ``model.named_parameters()`` order).
    mode : {"eval", "train"}
        ``"eval"`` (default): running BatchNorm statistics, no dropout. ``"train"``: batch
        statistics (the operator then depends on the batching) and dropout with masks seeded
        per batch: every product, :meth:`gradient` and :meth:`loss` see the same masks.
    dtype : None, "float32" or "float64"
        Default: the parameters' dtype. Otherwise parameters, floating buffers and
        inputs are cast copies (the model itself is not changed).
    forward : callable, optional
        ``forward(model, batch) -> outputs`` (default: ``model(batch[0])`` of an ``(X, y)`` pair).
    output : None, int, str or callable, optional
        Which part of the outputs the loss sees (``output=0``, ``output="logits"``, or
        ``outputs -> tensor``); default: the outputs are a tensor.
    targets : callable, optional
        ``targets(batch) -> targets`` for the loss (default: ``batch[1]`` of a pair).
    loss_on_batch : bool
        ``True``: the loss is called as ``loss_fn(outputs, batch)`` (a user loss that reads
        any fields of the batch it needs).
    num_batches : int, optional
        Use only the first ``num_batches`` batches of ``data`` in every pass.
    timeout : float, optional
        Seconds to wait for a ``torch.distributed`` collective before raising.
    max_columns : int, optional
        Most columns of a matmat pushed through one batched backward pass (default: all).

    Notes
    -----
    Vectors must be torch tensors on the operator's device (``TypeError`` otherwise); a float
    vector of the other precision is cast. Every call leaves the model's training flags and
    buffers and the global RNG exactly as they were, and runs the model under
    :func:`~specop.curvature.torch._params.kernels` (attention on the math kernel). With
    ``torch.distributed`` initialized, each process passes its own shard and the same vectors;
    the results equal one process on the union.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Any], data: Any,
                 params: Sequence[Any] | None = None, mode: str = "eval", dtype: Any = None, *,
                 forward: Callable[[nn.Module, Any], Any] | None = None, output: Any = None,
                 targets: Callable[[Any], Any] | None = None, loss_on_batch: bool = False,
                 num_batches: int | None = None, timeout: float | None = None,
                 max_columns: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected 'eval' or 'train', got {mode!r}")
        names = select_params(model, params)
        named = dict(model.named_parameters())
        dtypes = {named[n].dtype for n in names}
        want = _torch_dtype(dtype)
        if want is None:
            if len(dtypes) > 1:
                raise TypeError(f"dtype: the selected parameters have several dtypes {sorted(map(str, dtypes))}; "
                                "pass dtype='float32' or 'float64'")
            want = dtypes.pop()
        if want not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: the operator needs float32 or float64 parameters, got {want}")
        if max_columns is not None and (isinstance(max_columns, bool) or not isinstance(max_columns, int)
                                        or max_columns < 1):
            raise ValueError(f"max_columns: expected None or a positive int, got {max_columns!r}")
        if isinstance(data, torch.Tensor):
            raise TypeError("data: expected a batch (e.g. an (X, y) tuple of tensors) or a re-iterable of batches, "
                            "got a single Tensor")
        self.model, self.loss_fn, self.mode, self.timeout = model, loss_fn, mode, timeout
        self.max_columns, self.data, self.num_batches = max_columns, data, num_batches
        self._hooks = _batches.Hooks(model, forward, output, targets, loss_on_batch)
        self._loss = make_loss(loss_fn, loss_on_batch)
        self._passes = _core.iterate(data, num_batches, _batches.is_batch)
        _batches.validate(self._passes(), self._hooks.pair)
        self.param_names: tuple[str, ...] = tuple(names)
        self._keys = tuple("model." + n for n in names)
        self._shapes = [named[n].shape for n in names]
        device = named[names[0]].device
        P = sum(s.numel() for s in self._shapes)
        super().__init__((P, P), want, xp=backends.namespace("torch"), device=device, symmetric=True)
        self._batching = Batching()
        self._counts: tuple[int, int] | None = None  # (samples on lower ranks, samples on all ranks)

    # ------------------------------------------------------------ functional model
    @property
    def _random(self) -> bool:
        """Whether products draw random numbers seeded by sample index (dropout in train mode)."""
        return self.mode == "train"

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(self.dtype) if t.is_floating_point() and t.dtype != self.dtype else t

    def _theta(self) -> list[torch.Tensor]:
        """Leaves holding the selected parameters now (operator dtype), requiring grad."""
        named = dict(self.model.named_parameters())
        return [self._cast(named[n]).requires_grad_(True) for n in self.param_names]

    def _forward(self, theta: Sequence[torch.Tensor], b: Batch) -> torch.Tensor:
        """The tensor the loss sees: ``f(batch; theta)`` with the other parameters and buffers fixed."""
        if self._hooks.forward is None:
            _batches.check_pair(b.data, b.index, "forward=lambda model, batch: ...")
        tensors = dict(b.fixed)
        tensors.update(zip(self._keys, theta, strict=True))
        if self.mode == "train":  # the same dropout masks in every evaluation on this batch
            torch.manual_seed((b.offset * 1_000_003 + 0x5EED) % 2**62)
        return self._hooks.select(functional_call(self._hooks.call, tensors, (b.data,)), b.index)

    def _evaluate(self, theta: Sequence[torch.Tensor], b: Batch) -> tuple[torch.Tensor, Any, _core.BatchLoss]:
        """``(Z, targets, BatchLoss)``: the outputs, what the loss receives, and ``(S_b, Z_b)``."""
        with torch.enable_grad():
            Z = self._forward(theta, b)
            t = self._hooks.targets_of(b.data, b.index)
            return Z, t, self._loss.batch_loss(Z, t)

    def _flat(self, parts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return torch.cat([torch.zeros(s, dtype=self.dtype, device=self.device).reshape(-1) if p is None
                          else p.reshape(-1) for p, s in zip(parts, self._shapes, strict=True)])

    def _split(self, M: torch.Tensor) -> list[torch.Tensor]:
        """Columns of ``M`` ``(P, k)`` per parameter tensor, as ``(k, *shape)``."""
        k = M.shape[1]
        return [blk.T.reshape(k, *s) for blk, s in zip(M.split([s.numel() for s in self._shapes]), self._shapes,
                                                        strict=True)]

    def _join(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`_split`: per-parameter ``(k, *shape)`` blocks as ``(P, k)``."""
        return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).T

    def _in_chunks(self, block_fn: Callable[[torch.Tensor], torch.Tensor], M: torch.Tensor) -> torch.Tensor:
        """``block_fn`` on at most ``max_columns`` columns of ``M`` at a time, concatenated."""
        step = self.max_columns or M.shape[1]
        if step >= M.shape[1]:
            return block_fn(M)
        return torch.cat([block_fn(M[:, j:j + step]) for j in range(0, M.shape[1], step)], dim=1)

    # ------------------------------------------------------------------- the pass
    def _fixed_tensors(self) -> dict[str, torch.Tensor]:
        """Unselected parameters and (when casting) buffers, as passed to ``functional_call``."""
        fixed = {n: self._cast(p) for n, p in self.model.named_parameters() if n not in self.param_names}
        if any(b.is_floating_point() and b.dtype != self.dtype for b in self.model.buffers()):
            fixed.update({n: self._cast(b) for n, b in self.model.named_buffers()})
        return self._hooks.prefix(fixed)

    def _batches(self, start: int) -> Generator[Batch, int, None]:
        """The batches of one pass (inside :func:`call_scope`), with their sample offsets from ``start``.

        The offset of a batch is known once the previous batch's outputs are: the caller
        sends each batch's sample count back into the generator.
        """
        fixed = self._fixed_tensors()
        offset = start
        for i, raw in enumerate(self._passes()):
            n = yield Batch(i, _batches.to_operator(raw, self.device, self.dtype), raw, offset, fixed)
            offset += int(n)

    def _pass(self, batch_fn: Callable[[Batch], Contribution], what: str) -> torch.Tensor:
        """``sum_b batch_fn(b).value / sum_b Z_b`` over the data (and the processes)."""
        acc = _core.Accumulator()
        with call_scope(self.model, self.mode):
            start = self._sample_counts()[0] if self._random and _data.distributed() else 0
            gen = self._batches(start)
            b = next(gen, None)
            while b is not None:
                c = batch_fn(b)
                acc.add(c.value.detach(), c.normalizer)
                b = _send(gen, c.samples)
        return self._result(acc, what)

    def _result(self, acc: _core.Accumulator, what: str) -> torch.Tensor:
        if not _data.distributed():
            return acc.result()

        def reduce(total: torch.Tensor, norm: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
            parts = [total.reshape(-1)] + ([norm.reshape(1).to(total.dtype)] if norm is not None else [])
            flat = _data.all_reduce_sum(torch.cat(parts), what, self.timeout)
            return flat[:total.numel()].reshape(total.shape), (flat[-1] if norm is not None else None)

        return acc.result(reduce)

    def _sample_counts(self) -> tuple[int, int]:
        """``(samples on lower ranks, samples on all ranks)``; one forward pass, once (see :meth:`refresh`)."""
        if self._counts is None:
            with call_scope(self.model, self.mode), torch.no_grad():
                gen, n_local = self._batches(0), 0
                theta = [t.detach() for t in self._theta()]
                b = next(gen, None)
                while b is not None:
                    n = self._forward(theta, b).shape[0]
                    n_local += n
                    b = _send(gen, n)
            self._counts = _data.exclusive_offset(n_local, self.device, self.timeout)
        return self._counts

    @property
    def num_samples(self) -> int:
        """Samples in the data set (first dimension of the outputs, all processes).

        Counted once by a forward pass over the data (a collective under ``torch.distributed``:
        read it on every rank); :meth:`refresh` forgets it.
        """
        return self._sample_counts()[1]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        what = f"{type(self).__name__} product"
        if _data.distributed():
            _data.check_same_on_ranks(V, what, self.timeout)
        return self._pass(lambda b: self._matmat_batch(b, V), what)

    def _matmat_batch(self, batch: Batch, M: torch.Tensor) -> Contribution:
        """The curvature of ``S_b`` times ``M`` ``(P, k)``, with ``Z_b`` and ``n_b``: the one subclass hook."""
        raise NotImplementedError  # abstract: each operator defines its batch product

    # --------------------------------------------------------------- public extras
    def gradient(self) -> torch.Tensor:
        """The flat gradient ``nabla L = sum_b nabla S_b / sum_b Z_b``, shape ``(P,)``."""
        def batch(b: Batch) -> Contribution:
            theta = self._theta()
            Z, _, bl = self._evaluate(theta, b)
            grads = torch.autograd.grad(bl.total, theta, allow_unused=True) if bl.total.requires_grad \
                else [None] * len(theta)
            return Contribution(self._flat(grads), bl.normalizer, Z.shape[0])

        return self._pass(batch, "gradient")

    def loss(self) -> torch.Tensor:
        """The data-set loss ``L = sum_b S_b / sum_b Z_b`` (a 0-d tensor in the operator's dtype).

        Evaluated exactly as in :meth:`gradient` (same kernels, same dropout masks).
        """
        def batch(b: Batch) -> Contribution:
            Z, _, bl = self._evaluate(self._theta(), b)
            return Contribution(bl.total.detach(), bl.normalizer, Z.shape[0])

        return self._pass(batch, "loss")

    def refresh(self) -> None:
        """Forget everything computed from the model and data (cached graphs, sample counts).

        Call it after changing state the operator cannot see, e.g. a plain attribute of the
        model (a temperature), a global flag, or data tensors edited through ``.data``.
        """
        self._counts = None
        self._batching = Batching()

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["xp"] = None  # a module: rebuilt from the backend name
        state["_passes"] = None  # a closure over the data: rebuilt
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.xp = backends.namespace("torch")
        self._passes = _core.iterate(self.data, self.num_batches, _batches.is_batch)

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        return f"{base}, mode={self.mode}, params={len(self.param_names)} tensors>"
