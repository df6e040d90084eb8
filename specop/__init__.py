"""specop: spectral algorithms on any large symmetric linear operator.

One :class:`LinearOperator` protocol for sparse matrices, dense arrays of numpy,
torch, jax, cupy or array-api-strict, and the Hessian, Gauss-Newton and Fisher
matrices of PyTorch and JAX models; generic Lanczos, thick-restart ``eigsh``,
stochastic Lanczos quadrature, the kernel polynomial method and trace estimators
that run unchanged on all of them.
"""

from specop import random
from specop._errors import ConvergenceWarning, NonFiniteError
from specop.linalg import *  # noqa: F403
from specop.linalg import __all__ as _linalg_all
from specop.operators import (
    DenseOperator,
    DiagonalOperator,
    FunctionOperator,
    IdentityOperator,
    LinearOperator,
    ScipyOperator,
    SparseOperator,
    aslinearoperator,
)

__version__ = "0.1.0"

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "DiagonalOperator",
    "IdentityOperator",
    "FunctionOperator",
    "SparseOperator",
    "ScipyOperator",
    "aslinearoperator",
    "NonFiniteError",
    "ConvergenceWarning",
    "random",
    *_linalg_all,
]
