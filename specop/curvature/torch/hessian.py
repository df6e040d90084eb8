"""The Hessian of the mean loss as a linear operator.

``H = (1/N) sum_n d^2/dtheta^2 loss(f(x_n; theta), y_n)``, applied per batch by
reverse-over-reverse differentiation: the batch gradient is formed once with its
graph (``torch.func.vjp`` of ``torch.func.grad``) and its vector-Jacobian product,
which is ``H_b v`` since ``H_b`` is symmetric, is vmapped over the columns
(Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994).
"""

from __future__ import annotations

import torch

from specop.curvature.torch.base import CurvatureOperator

__all__ = ["HessianOperator"]


class HessianOperator(CurvatureOperator):
    r"""The Hessian ``H = (1/N) \sum_n \nabla^2_\theta \ell(f(x_n;\theta), y_n)`` of the mean loss.

    See :class:`~specop.curvature.torch.base.CurvatureOperator` for the arguments.
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

    def _matmat_batch(self, X: torch.Tensor, y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        theta = self._theta()
        grad_fn = torch.func.grad(lambda th: self._batch_loss(th, X, y))
        vjp_fn = torch.func.vjp(grad_fn, theta)[1]
        return self._columns(lambda v: self._flat(vjp_fn(self._unflat(v))[0]), M)
