"""JAX curvature operators: Hessian, Gauss-Newton and Fisher of JAX functions over pytrees.

Vectors are flat jax arrays (:func:`jax.flatten_util.ravel_pytree` order);
``op.unravel(v)`` maps them back to parameter pytrees.
"""

from specop.curvature.jax.base import JaxCurvatureOperator
from specop.curvature.jax.ggn import FisherOperator, GGNOperator
from specop.curvature.jax.hessian import HessianOperator

__all__ = ["HessianOperator", "GGNOperator", "FisherOperator", "JaxCurvatureOperator"]
