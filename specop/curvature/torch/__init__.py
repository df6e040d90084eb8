"""Hessian, generalized Gauss-Newton and Fisher operators of ``torch.nn.Module`` models.

>>> from specop.curvature.torch import HessianOperator, GGNOperator, FisherOperator

Every operator is a curvature of the data-set loss ``L = sum_b S_b / sum_b Z_b`` (batch
sums over normalizers read from the loss itself: class weights, ``ignore_index``, masks)
over a whole data set (one batch of any structure, or an iterable of batches), a symmetric
:class:`specop.LinearOperator` on the torch backend in the model's dtype and device; see
:class:`CurvatureOperator` and ``docs/concepts/curvature.md``.
"""

from specop.curvature.torch.base import CurvatureOperator
from specop.curvature.torch.fisher import FisherOperator
from specop.curvature.torch.ggn import GGNOperator
from specop.curvature.torch.hessian import HessianOperator

__all__ = ["CurvatureOperator", "HessianOperator", "GGNOperator", "FisherOperator"]
