"""The generalized Gauss-Newton matrix of the mean loss as a linear operator.

``G = (1/N) sum_n J_n^T H_n J_n`` with ``J_n = df(x_n)/dtheta`` and ``H_n`` the
Hessian of the loss with respect to the outputs (Schraudolph, "Fast curvature
matrix-vector products for second-order gradient descent", Neural Computation
2002). Per batch: ``J v`` as the vector-Jacobian product of ``u -> J^T u`` (reverse over
reverse, cheaper than forward mode here), the output Hessian in closed form
for cross-entropy and MSE (autodiff otherwise, see ``_losses``), then ``J^T u`` by
``torch.func.vjp``. ``H - G`` is the residual of Papyan ("Traces of class/cross-class
structure pervade deep learning spectra", JMLR 2020, sec. 2).
"""

from __future__ import annotations

import torch

from specop.curvature.torch._losses import output_hvp
from specop.curvature.torch.base import CurvatureOperator

__all__ = ["GGNOperator"]


class GGNOperator(CurvatureOperator):
    r"""The GGN ``G = (1/N) \sum_n J_n^T \nabla^2_f \ell(f_n, y_n) J_n``; symmetric PSD for convex losses.

    See :class:`~specop.curvature.torch.base.CurvatureOperator` for the arguments.
    With ``nn.MSELoss()`` (mean over the ``B x D`` outputs) the output Hessian of a
    batch is ``2 / (B D) I``, so ``G = (2 / (N D)) sum_n J_n^T J_n``; with
    ``nn.CrossEntropyLoss()`` it is ``(diag(p) - p p^T) / B`` per sample.
    """

    def _matmat_batch(self, X: torch.Tensor, y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        theta = self._theta()

        def f(th: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self._forward(th, X)

        Z, vjp_fn = torch.func.vjp(f, theta)[:2]
        hess = output_hvp(self._kind, self.loss_fn, Z, y)
        # J v as the vjp of the linear map u -> J^T u (reverse over reverse): no forward-mode
        # pass per column, whose decompositions are far slower than backward on CPU
        jv_fn = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(Z))[1]

        def col(v: torch.Tensor) -> torch.Tensor:
            JV = jv_fn(self._unflat(v))[0]
            return self._flat(vjp_fn(hess(JV))[0])

        return self._columns(col, M)
