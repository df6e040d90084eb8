"""Operators: the :class:`LinearOperator` protocol, concrete operators, algebra, scipy bridge."""

from specop.operators.algebra import (
    PowerOperator,
    ProductOperator,
    ScaledOperator,
    ShiftedOperator,
    SumOperator,
    TransposeOperator,
)
from specop.operators.base import LinearOperator, check_square, resolve_like
from specop.operators.concrete import DenseOperator, DiagonalOperator, FunctionOperator, IdentityOperator
from specop.operators.scipy_bridge import ScipyOperator, SparseOperator, aslinearoperator, to_scipy

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "DiagonalOperator",
    "IdentityOperator",
    "FunctionOperator",
    "SparseOperator",
    "ScipyOperator",
    "SumOperator",
    "ScaledOperator",
    "ProductOperator",
    "TransposeOperator",
    "ShiftedOperator",
    "PowerOperator",
    "aslinearoperator",
    "to_scipy",
    "check_square",
    "resolve_like",
]
