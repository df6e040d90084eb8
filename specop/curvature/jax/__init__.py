"""JAX curvature operators: Hessian, Gauss-Newton and Fisher of JAX functions over pytrees.

Each is the curvature of the data-set loss ``L = sum_b S_b / sum_b Z_b``
(:mod:`specop.curvature._core`). Vectors are flat jax arrays of the trainable leaves
(:func:`jax.flatten_util.ravel_pytree` order); ``op.ravel(tree)`` / ``op.unravel(v)``
convert, ``op.matvec_tree(tree)`` multiplies pytrees and ``op.pure_matvec(v, params)``
is a pure function for ``jax.jit``, ``jax.vmap`` and matfree.
"""

from specop.curvature.jax._batches import Batch
from specop.curvature.jax._losses import CrossEntropyLoss, MSELoss
from specop.curvature.jax.base import JaxCurvatureOperator
from specop.curvature.jax.ggn import FisherOperator, GGNOperator
from specop.curvature.jax.hessian import HessianOperator

__all__ = ["HessianOperator", "GGNOperator", "FisherOperator", "JaxCurvatureOperator", "CrossEntropyLoss",
           "MSELoss", "Batch"]
