"""The Hessian of the mean loss as a linear operator.

``H = (1/N) sum_n d^2/dtheta^2 loss(f(x_n; theta), y_n)``, applied per batch by
reverse-over-reverse differentiation: the batch gradient is formed once with its
graph (``torch.func.vjp`` of ``torch.func.grad``; kept between products when
``cache_graph``, as PyHessian does with its retained graph) and its vector-Jacobian product,
which is ``H_b v`` since ``H_b`` is symmetric, is vmapped over the columns
(Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994).
"""

from __future__ import annotations

from typing import Any

import torch

from specop.curvature.torch.base import CurvatureOperator

__all__ = ["HessianOperator"]


class HessianOperator(CurvatureOperator):
    r"""The Hessian ``H = (1/N) \sum_n \nabla^2_\theta \ell(f(x_n;\theta), y_n)`` of the mean loss.

    See :class:`~specop.curvature.torch.base.CurvatureOperator` for the arguments, and:

    cache_graph : bool, optional
        Keep each batch's gradient graph between products, so that a product costs
        one extra backward pass instead of a forward and two backward passes (the
        graph is rebuilt when any parameter or buffer of the model changes). Default:
        on for one in-memory ``(X, y)`` batch, off for an iterable of batches (whose
        graphs would all be held in memory).
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
            cache_graph = isinstance(self._batches._batches, list) and len(self._batches._batches) == 1
        self.cache_graph = bool(cache_graph)
        self._graphs: dict[int, tuple[tuple, Any]] = {}

    def _state_key(self) -> tuple:
        """Identity and version of every parameter and buffer: changes when the model is updated."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def _matmat_batch(self, X: torch.Tensor, y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        key = self._state_key() if self.cache_graph else None
        cached = self._graphs.get(self._batch_index)
        if cached is not None and cached[0] == key:
            vjp_fn = cached[1]
        else:
            grad_fn = torch.func.grad(lambda th: self._batch_loss(th, X, y))
            vjp_fn = torch.func.vjp(grad_fn, self._theta())[1]
            if self.cache_graph:
                self._graphs[self._batch_index] = (key, vjp_fn)
        return self._columns(lambda v: self._flat(vjp_fn(self._unflat(v))[0]), M)
