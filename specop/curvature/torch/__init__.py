"""Hessian, generalized Gauss-Newton and Fisher operators of ``torch.nn.Module`` models.

>>> from specop.curvature.torch import HessianOperator, GGNOperator, FisherOperator

Every operator is the curvature of the *mean* loss over a whole data set (a tensor
pair or an iterable of batches), a symmetric :class:`specop.LinearOperator` on the
torch backend in the model's dtype and device; see :class:`CurvatureOperator`.
"""

from specop.curvature.torch.base import CurvatureOperator
from specop.curvature.torch.fisher import FisherOperator
from specop.curvature.torch.ggn import GGNOperator
from specop.curvature.torch.hessian import HessianOperator

__all__ = ["CurvatureOperator", "HessianOperator", "GGNOperator", "FisherOperator"]
