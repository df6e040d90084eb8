r"""The generalized Gauss-Newton matrix of the data-set loss as a linear operator.

``G = sum_b J_b^T (d^2 S_b / dz^2) J_b / sum_b Z_b`` with ``J_b = dz_b / dtheta`` the Jacobian
of the batch's outputs ``z_b`` (the tensor the loss sees) and ``d^2 S_b / dz^2`` the Hessian
of the batch's loss sum in the outputs (Schraudolph, "Fast curvature matrix-vector products
for second-order gradient descent", Neural Computation 2002). Per batch: one forward pass,
``J V`` as the vector-Jacobian product of the linear map ``u -> J^T u`` (reverse over
reverse), the output Hessian in closed form for cross-entropy (per position
``c_n (diag p_n - p_n p_n^T)``, with class weights, ``ignore_index`` and label smoothing in
``c_n``), MSE and the losses linear in their input (see :mod:`._losses`; autodiff otherwise),
then ``J^T (.)``; all columns of a block in one batched backward pass. ``H - G`` is the
residual of Papyan ("Traces of class/cross-class structure pervade deep learning spectra",
JMLR 2020, sec. 2).
"""

from __future__ import annotations

import torch

from specop.curvature.torch._linear import Linearization
from specop.curvature.torch.base import Batch, Contribution, CurvatureOperator

__all__ = ["GGNOperator"]


class GGNOperator(CurvatureOperator):
    r"""The GGN ``G = \sum_b J_b^T \nabla^2_z S_b J_b / \sum_b Z_b``; symmetric PSD for convex losses.

    See :class:`~specop.curvature.torch.base.CurvatureOperator` for the arguments. With
    ``nn.MSELoss()`` (``S_b`` the sum of squared errors, ``Z_b`` the number of output
    entries) ``G = (2 / (N D)) sum_n J_n^T J_n`` over ``N`` samples of ``D`` outputs; with
    ``nn.CrossEntropyLoss()`` the output Hessian of each position ``n`` is
    ``c_n (diag p_n - p_n p_n^T)``, ``c_n = 1`` for a plain mean, ``0`` for an ignored target.
    """

    def _matmat_batch(self, batch: Batch, M: torch.Tensor) -> Contribution:
        theta = self._theta()
        Z, t, bl = self._evaluate(theta, batch)
        lin = Linearization(theta, Z, self._batching)
        hess = self._loss.output_hvp(Z, t)

        def block(B: torch.Tensor) -> torch.Tensor:
            return self._join(lin.jtv(hess(lin.jv(self._split(B)))))

        return Contribution(self._in_chunks(block, M), bl.normalizer, Z.shape[0])
