"""Curvature matrices of neural networks as specop operators.

``specop.curvature.torch`` holds the Hessian, generalized Gauss-Newton and Fisher
operators of a ``torch.nn.Module`` on a data set; ``specop.curvature.jax`` the same
for JAX functions and pytrees. Importing this package imports neither library:
import the sub-package you need.
"""

__all__: list[str] = []
