"""The base class of the PyTorch curvature operators: everything but the per-batch product.

A curvature operator ``C`` of a model ``f(x; theta)``, a loss ``L`` and ``N`` samples is
the data mean ``C = (1/N) sum_b n_b C_b`` of batch products ``C_b`` (each the curvature
of its batch-mean loss), as in curvlinops (Dangel et al., "Convolutions and more as
einsum", 2023; the ``_matmat_batch`` hook design). This class selects and flattens the
parameters, iterates over the data and weights the batches, switches the model's mode
and restores its state, checks vectors, reduces over ``torch.distributed`` processes,
and provides :meth:`gradient` and :meth:`loss`. A subclass implements only
``_matmat_batch(X, y, M)``: the batch-mean product with the columns of ``M`` ``(P, k)``.

Products use ``torch.func`` (``functional_call``, ``grad``, ``jvp``, ``vjp``, ``vmap``;
Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from specop import backends
from specop.curvature.torch import _data
from specop.curvature.torch._losses import loss_kind
from specop.curvature.torch._params import model_state, select_params, unflatten
from specop.operators.base import LinearOperator

__all__ = ["CurvatureOperator"]

MODES = ("eval", "train")


def _torch_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or dtype in (torch.float32, torch.float64):
        return dtype
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)
    raise TypeError(f"dtype: expected None, 'float32', 'float64', torch.float32 or torch.float64, got {dtype!r}")


class CurvatureOperator(LinearOperator):
    """A ``P x P`` curvature matrix of the mean loss of ``model`` over ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        The network ``f(x; theta)``; evaluated at its *current* parameters on every call.
    loss_fn : callable
        ``loss_fn(outputs, targets) -> scalar``, the **mean** over the batch, e.g.
        ``nn.CrossEntropyLoss()``, ``nn.MSELoss()``. A ``torch.nn`` loss with
        ``reduction="sum"`` or ``"none"`` is rejected (``ValueError``).
    data : (X, y) tuple of tensors, or re-iterable of (X, y) batches
        The (local) data set, e.g. a ``DataLoader``; batches may differ in size.
        Batches are moved to the operator's device; floating ones cast to its dtype.
    params : None or list of str or tensors
        ``None``: all parameters with ``requires_grad``; otherwise the block of the
        named / given parameters (in ``model.named_parameters()`` order).
    mode : {"eval", "train"}
        ``"eval"`` (default): running BatchNorm statistics, no dropout. ``"train"``:
        batch statistics (so the operator depends on the batching) and dropout with
        masks seeded per batch (the same masks in every product).
    dtype : None, "float32" or "float64"
        Default: the parameters' dtype. Otherwise parameters, floating buffers and
        inputs are cast copies (the model itself is not changed).
    timeout : float, optional
        Seconds to wait for a ``torch.distributed`` collective before raising
        (default: the process group's timeout).
    max_columns : int, optional
        Most columns of a matmat pushed through one vmapped pass (default: all ``k``
        at once). The data are still read once per matmat: smaller chunks reuse each
        batch's linearization and only bound the memory of the batched pass.

    Notes
    -----
    Vectors must be torch tensors on the operator's device (``TypeError`` otherwise);
    a float vector of the other precision is cast to the operator's dtype. Products,
    :meth:`gradient` and :meth:`loss` leave the model's training flags and buffers
    exactly as they were. With ``torch.distributed`` initialized, every process passes
    its own shard and the same vectors; results equal one process on the union.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Any], data: Any,
                 params: Sequence[Any] | None = None, mode: str = "eval", dtype: Any = None, *,
                 timeout: float | None = None, max_columns: int | None = None) -> None:
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
        self.model, self.loss_fn, self.mode, self.timeout = model, loss_fn, mode, timeout
        self.max_columns = max_columns
        self.param_names: tuple[str, ...] = tuple(names)
        self._shapes = [named[n].shape for n in names]
        self._kind = loss_kind(loss_fn)
        self._rng_seed = 0
        device = named[names[0]].device
        self._batches = _data.Batches(data, device, want)
        n_local = sum(X.shape[0] for _, X, _ in self._batches)
        self._offset, self.num_samples = _data.exclusive_offset(n_local, device, timeout)
        if self.num_samples == 0:
            raise ValueError("data: the data set is empty (no samples in any batch)")
        P = sum(s.numel() for s in self._shapes)
        super().__init__((P, P), want, xp=backends.namespace("torch"), device=device, symmetric=True)
        self._vmap_ok = True
        self._fixed: dict[str, torch.Tensor] = {}
        self._batch_index = 0
        self._sample_offset = 0

    # ------------------------------------------------------------ functional model
    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(self.dtype) if t.is_floating_point() and t.dtype != self.dtype else t

    def _theta(self) -> tuple[torch.Tensor, ...]:
        """The selected parameters now (detached, in the operator's dtype)."""
        named = dict(self.model.named_parameters())
        return tuple(self._cast(named[n]) for n in self.param_names)

    def _forward(self, theta: Sequence[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        """``f(X; theta)`` with the other parameters and the buffers fixed."""
        tensors = dict(self._fixed)
        tensors.update(zip(self.param_names, theta, strict=True))
        if self.mode == "train":  # same dropout masks in every evaluation on this batch
            torch.manual_seed((self._rng_seed * 1_000_003 + self._sample_offset) % 2**62)
        return functional_call(self.model, tensors, (X,))

    def _batch_loss(self, theta: Sequence[torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch-mean loss ``L_b(theta)``."""
        out = self.loss_fn(self._forward(theta, X), y)
        if not isinstance(out, torch.Tensor) or out.ndim != 0:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"loss_fn: expected a scalar (the batch mean), got {shape}; use reduction='mean'")
        return out

    def _flat(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in parts])

    def _unflat(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return unflatten(v, self._shapes)

    def _in_chunks(self, block_fn: Callable[[torch.Tensor], torch.Tensor], M: torch.Tensor) -> torch.Tensor:
        """``block_fn`` on at most ``max_columns`` columns of ``M`` at a time, concatenated."""
        step = self.max_columns or M.shape[1]
        if step >= M.shape[1]:
            return block_fn(M)
        return torch.cat([block_fn(M[:, j:j + step]) for j in range(0, M.shape[1], step)], dim=1)

    def _columns(self, fn: Callable[[torch.Tensor], torch.Tensor], M: torch.Tensor) -> torch.Tensor:
        """``[fn(M[:, 0]), ..., fn(M[:, k-1])]`` as columns: vmapped passes, or a loop if vmap fails."""
        return self._in_chunks(lambda B: self._columns_block(fn, B), M)

    def _columns_block(self, fn: Callable[[torch.Tensor], torch.Tensor], M: torch.Tensor) -> torch.Tensor:
        if M.shape[1] > 1 and self._vmap_ok:
            try:
                return torch.func.vmap(fn, in_dims=1, out_dims=1, randomness="same")(M)
            except Exception:  # not vmappable (in-place ops, .item(), ...): loop below; errors re-raise there
                self._vmap_ok = False
        return torch.stack([fn(M[:, j]) for j in range(M.shape[1])], dim=1)

    # ------------------------------------------------------------------- the pass
    def _fixed_tensors(self) -> dict[str, torch.Tensor]:
        """Unselected parameters and (when casting) buffers, as passed to ``functional_call``."""
        fixed = {n: self._cast(p) for n, p in self.model.named_parameters() if n not in self.param_names}
        if any(b.is_floating_point() and b.dtype != self.dtype for b in self.model.buffers()):
            fixed.update({n: self._cast(b) for n, b in self.model.named_buffers()})
        return fixed

    def _mean_over_data(self, batch_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        shape: tuple[int, ...], what: str) -> torch.Tensor:
        """``(1/N) sum_b n_b batch_fn(X_b, y_b)`` over the data (and the processes).

        The product of a single batch in a single process is returned as computed (not
        weighted and divided back), so that it is bit-identical to a subclass's shortcut.
        """
        total = torch.zeros(shape, dtype=self.dtype, device=self.device)
        n, only = 0, None
        with model_state(self.model, self.mode):
            self._fixed = self._fixed_tensors()
            try:
                for i, X, y in self._batches:
                    self._batch_index, self._sample_offset = i, self._offset + n
                    out = batch_fn(X, y).detach()
                    only = out if n == 0 else None  # the one batch's product, while there is one
                    total += X.shape[0] * out
                    n += X.shape[0]
            finally:
                self._fixed = {}
        if not _data.distributed():
            return only if only is not None else total / n
        return self._reduce(total, n, what)

    def _reduce(self, total: torch.Tensor, n: int, what: str) -> torch.Tensor:
        """``sum_ranks total / sum_ranks n``: one collective, the count riding along in the operator's
        dtype (exact in float32 up to 2^24 samples, and relatively within float32 rounding beyond)."""
        flat = torch.cat([total.reshape(-1), torch.tensor([float(n)], dtype=total.dtype, device=self.device)])
        _data.all_reduce_sum(flat, what, self.timeout)
        return (flat[:-1] / flat[-1]).reshape(total.shape)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if _data.distributed():
            _data.check_same_on_ranks(V, f"{type(self).__name__} product", self.timeout)
        return self._mean_over_data(lambda X, y: self._matmat_batch(X, y, V), tuple(V.shape),
                                    f"{type(self).__name__} product")

    def _matmat_batch(self, X: torch.Tensor, y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """The batch-mean curvature of batch ``(X, y)`` times ``M`` (P, k): the one subclass hook."""
        raise NotImplementedError  # abstract: each operator defines its batch product

    # --------------------------------------------------------------- public extras
    def gradient(self) -> torch.Tensor:
        """The flat gradient ``(1/N) sum_n grad_theta loss_n`` of the mean loss, shape ``(P,)``."""
        def batch(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            grads = torch.func.grad(lambda th: self._batch_loss(th, X, y))(self._theta())
            return self._flat(grads)

        return self._mean_over_data(batch, (self.shape[0],), "gradient")

    def loss(self) -> torch.Tensor:
        """The mean loss over all samples (a 0-d tensor in the operator's dtype)."""
        def batch(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self._batch_loss(self._theta(), X, y)

        return self._mean_over_data(batch, (), "loss")

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        return f"{base}, mode={self.mode}, N={self.num_samples}, params={len(self.param_names)} tensors>"
