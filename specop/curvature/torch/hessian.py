r"""The Hessian of the data-set loss as a linear operator.

``H = nabla^2 L = sum_b nabla^2 S_b / sum_b Z_b`` (see :mod:`.base`), applied per batch by
reverse-over-reverse differentiation: the batch gradient ``nabla S_b`` is formed once with
its graph (``torch.autograd.grad(..., create_graph=True)`` on leaf copies of the parameters
passed through ``torch.func.functional_call``) and its vector-Jacobian product, which is
``nabla^2 S_b v`` since the Hessian is symmetric, is one backward pass per column, batched
over the columns (Pearlmutter, "Fast exact multiplication by the Hessian", Neural
Computation 1994). With ``cache_graph`` the graph is kept between products, as PyHessian
keeps its retained graph; a product then costs one backward pass.

**What the cache watches.** A cached graph is reused only while (checked before every
product, 0.4% of a product on the digits MLP, ``benchmarks/curvature.py``):

* every parameter and buffer of the model is the same tensor (identity and version counter)
  *and holds the same values* (compared with a copy taken when the graph was built, so
  ``p.data.mul_(3)``, which bumps no version counter, is seen);
* the batch's tensors are the same tensors with the same version counters and shapes (an
  in-place op on the data is seen; a ``.data`` edit of the data is not).

Anything else the graph depends on (a plain attribute of the model such as a temperature,
hooks, global flags, data edited through ``.data``) is not watched: call
:meth:`HessianOperator.refresh` after changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from specop.curvature import _core
from specop.curvature.torch import _batches, _data
from specop.curvature.torch._linear import vjp
from specop.curvature.torch.base import Batch, Contribution, CurvatureOperator

__all__ = ["HessianOperator"]


@dataclass(frozen=True)
class _Graph:
    """A batch's gradient graph and what it was built from."""

    key: tuple
    snapshot: tuple[torch.Tensor, ...]
    theta: tuple[torch.Tensor, ...]
    grads: tuple[torch.Tensor | None, ...]
    normalizer: torch.Tensor | None
    samples: int


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of every submodule (shared ones once per owner): a direct walk,
    3x cheaper than ``parameters()`` + ``buffers()``, which deduplicate through generators."""
    out: list[torch.Tensor] = []
    stack = [model]
    while stack:
        m = stack.pop()
        out.extend(t for t in m._parameters.values() if t is not None)
        out.extend(t for t in m._buffers.values() if t is not None)
        stack.extend(c for c in m._modules.values() if c is not None)
    return out


class HessianOperator(CurvatureOperator):
    r"""The Hessian ``H = \sum_b \nabla^2_\theta S_b / \sum_b Z_b`` of the data-set loss.

    See :class:`~specop.curvature.torch.base.CurvatureOperator` for the arguments, and:

    cache_graph : bool, optional
        Keep each batch's gradient graph between products, so that a product costs
        one extra backward pass instead of a forward and two backward passes (rebuilt
        whenever the model or the batch changes; see the module docstring for exactly
        what is watched, and :meth:`refresh`). Default: on for one in-memory batch, off
        for several batches (whose graphs would all be held in memory).

    ``H - GGNOperator(...)`` is Papyan's residual term (the part of the Hessian that
    involves the second derivatives of the network).

    Examples
    --------
    >>> import torch
    >>> from specop.curvature.torch import HessianOperator
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    >>> H = HessianOperator(model, torch.nn.CrossEntropyLoss(), (X, y))
    >>> H.shape
    (8, 8)
    """

    def __init__(self, *args: Any, cache_graph: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if cache_graph is None:  # one in-memory batch: keeping its gradient graph costs little
            cache_graph = self._one_batch() is not None
        self.cache_graph = bool(cache_graph)
        self._graphs: dict[int, _Graph] = {}

    def _one_batch(self) -> Any:
        """The data's only batch when the data are one in-memory batch (checked per call: a list may grow)."""
        if _batches.is_batch(self.data):
            return self.data
        if isinstance(self.data, (list, tuple)) and (len(self.data) == 1 or
                                                     (self.num_batches == 1 and len(self.data) > 0)):
            return self.data[0]
        return None

    def _watch(self, source: Any) -> tuple[list[torch.Tensor], tuple]:
        """The model's parameters and buffers, and the identity and version of them and of the data's tensors."""
        state = _tensors(self.model)
        return state, (tuple((t.data_ptr(), t._version) for t in state),
                       tuple((t.data_ptr(), t._version, t.shape) for t in _batches.tensor_leaves(source)))

    def _valid(self, g: _Graph, source: Any) -> bool:
        state, key = self._watch(source)
        return key == g.key and all(torch.equal(t, s) for t, s in zip(state, g.snapshot, strict=True))

    def refresh(self) -> None:
        """Drop the cached graphs (and sample counts): the next product rebuilds them."""
        super().refresh()
        self._graphs = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_graphs"] = {}  # autograd graphs do not pickle: rebuilt at the first product
        return state

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        # One batch whose gradient graph is cached and current: the product needs neither the
        # data nor the model's mode (no forward pass), so skip the pass; the same result, bit
        # for bit, and under torch.distributed the same collectives in the same order.
        if self.cache_graph:
            source = self._one_batch()
            cached = self._graphs.get(0)
            if source is not None and cached is not None and self._valid(cached, source):
                what = f"{type(self).__name__} product"
                if _data.distributed():
                    _data.check_same_on_ranks(V, what, self.timeout)
                acc = _core.Accumulator()
                acc.add(self._backward(cached, V), cached.normalizer)
                return self._result(acc, what)
        return super()._matmat(V)

    def _matmat_batch(self, batch: Batch, M: torch.Tensor) -> Contribution:
        g = self._graphs.get(batch.index) if self.cache_graph else None
        if g is None or not self._valid(g, batch.source):
            g = self._gradient_graph(batch)
            if self.cache_graph:
                self._graphs[batch.index] = g
        return Contribution(self._backward(g, M), g.normalizer, g.samples)

    def _gradient_graph(self, b: Batch) -> _Graph:
        """Leaf copies of the parameters and the gradient of ``S_b`` with its graph (``create_graph``)."""
        state, key = self._watch(b.source)
        snapshot = tuple(t.detach().clone() for t in state) if self.cache_graph else ()
        theta = self._theta()
        Z, _, bl = self._evaluate(theta, b)
        with torch.enable_grad():
            grads = torch.autograd.grad(bl.total, theta, create_graph=True, allow_unused=True) \
                if bl.total.requires_grad else (None,) * len(theta)
        return _Graph(key, snapshot, tuple(theta), tuple(grads), bl.normalizer, Z.shape[0])

    def _backward(self, g: _Graph, M: torch.Tensor) -> torch.Tensor:
        """``nabla^2 S_b M`` by one backward pass of the gradient graph per column (batched)."""
        live = [i for i, d in enumerate(g.grads) if d is not None and d.requires_grad]
        grads = [d for d in g.grads if d is not None and d.requires_grad]

        def block(B: torch.Tensor) -> torch.Tensor:
            if not live:  # the gradient does not depend on the parameters: zero Hessian
                return torch.zeros_like(B)
            parts = self._split(B)
            cols = vjp(grads, [g.theta[i] for i in live], [parts[i] for i in live],
                       B.shape[1], self._batching)
            out = [torch.zeros_like(p) for p in parts]
            for i, c in zip(live, cols, strict=True):
                if c is not None:
                    out[i] = c
            return self._join(out)

        return self._in_chunks(block, M)
