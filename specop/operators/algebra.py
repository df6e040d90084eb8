"""Lazy operator algebra: ``A + B``, ``c * A``, ``A @ B``, ``A.T``, ``A.shift(sigma)``.

Nothing is formed: each node stores its operands and applies them on demand.
Operands must share a backend and a device; the result dtype follows the
backend's type promotion (float32 with float64 gives float64).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from specop import backends
from specop._validate import Described, fail
from specop.operators.base import LinearOperator, check_square

__all__ = ["SumOperator", "ScaledOperator", "ProductOperator", "TransposeOperator",
           "ShiftedOperator", "PowerOperator", "as_real_scalar", "as_scale", "check_compatible"]


def as_real_scalar(c: Any, what: str) -> float:
    """``float(c)`` for a finite real number; ``TypeError``/``ValueError`` otherwise."""
    if backends.is_array(c) and getattr(c, "ndim", None) == 0:
        if backends.dtype_name(c.dtype).startswith(("complex", "bool")):
            got = Described(f"a 0-d array of dtype {backends.dtype_name(c.dtype)}")
            raise fail(what, "a real scalar", got, TypeError)
        c = float(backends.to_numpy(c))
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        raise fail(what, "a real scalar", Described(f"an object of type {type(c).__name__}"), TypeError)
    c = float(c)
    if not math.isfinite(c):
        raise fail(what, "a finite scalar", c)
    return c


def as_scale(c: Any, op: LinearOperator, what: str) -> float:
    """A scale factor of ``op`` as a float: real, or complex with zero imaginary part (scipy allows complex scalars).

    A scalar with a non-zero imaginary part would make the operator complex, which a specop
    operator (real float32/float64) cannot hold: ``TypeError`` naming ``what`` and the dtype.
    """
    value = c
    if backends.is_array(c) and getattr(c, "ndim", None) == 0 and backends.dtype_name(c.dtype).startswith("complex"):
        value = complex(backends.to_numpy(c))
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        if value.imag != 0:
            raise fail(what, f"a real scalar (the operator is {backends.dtype_name(op.dtype)}, and specop operators "
                       "are real: a complex scale would need a complex dtype; apply the real and imaginary parts "
                       "as two real operators)", c, TypeError)
        value = value.real
    return as_real_scalar(value, what)


def check_compatible(A: LinearOperator, B: LinearOperator, what: str) -> None:
    """Raise ``TypeError`` if ``A`` and ``B`` live on different backends or devices."""
    if A.backend != B.backend:
        raise TypeError(f"{what}: operators of two backends were mixed: {A.backend} and {B.backend}")
    if not backends.same_device(A.device, B.device):
        raise TypeError(f"{what}: operators on two devices were mixed: {A.device} and {B.device}")


def _result_dtype(*ops: LinearOperator) -> Any:
    return ops[0].xp.result_type(*(op.dtype for op in ops))


def _cast(xp: Any, Y: Any, dtype: Any) -> Any:
    return Y if Y.dtype == dtype else xp.astype(Y, dtype)


class SumOperator(LinearOperator):
    """``A_1 + A_2 + ...`` (nested sums are flattened)."""

    def __init__(self, *ops: LinearOperator) -> None:
        flat: list[LinearOperator] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, SumOperator) else [op])
        first = flat[0]
        for op in flat[1:]:
            check_compatible(first, op, "A + B")
            if op.shape != first.shape:
                raise ValueError(f"A + B: shapes {first.shape} and {op.shape} differ")
        self.ops: tuple[LinearOperator, ...] = tuple(flat)
        # symmetric terms make a symmetric sum, and one non-symmetric term among them a non-symmetric one;
        # two or more non-symmetric terms may sum to a symmetric operator (C + C.T): not known either way
        asym = sum(not op.is_symmetric for op in flat)
        super().__init__(first.shape, _result_dtype(*flat), xp=first.xp, device=first.device,
                         symmetric=asym == 0,
                         symmetry_known=asym <= 1 and all(op.symmetry_known for op in flat))

    @property
    def args(self) -> tuple[Any, ...]:
        return self.ops

    def _apply(self, V: Any, adjoint: bool) -> Any:
        out = None
        for op in self.ops:
            W = _cast(self.xp, V, op.dtype)
            Y = _cast(self.xp, op._rmatmat(W) if adjoint else op._matmat(W), self.dtype)
            out = Y if out is None else out + Y
        return out

    def _matmat(self, V: Any) -> Any:
        return self._apply(V, adjoint=False)

    def _rmatmat(self, V: Any) -> Any:
        return self._apply(V, adjoint=True)


class ScaledOperator(LinearOperator):
    """``c * A`` for a real scalar ``c``."""

    def __init__(self, op: LinearOperator, c: Any) -> None:
        c = as_scale(c, op, "c * A")
        if isinstance(op, ScaledOperator):
            folded = c * op.c  # fold nested scalings
            if not math.isfinite(folded):
                raise fail("c * A", f"a scale whose product with the operator's scale {op.c:g} is finite", c)
            c, op = folded, op.op
        self.op: LinearOperator = op
        self.c: float = c
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=op.is_symmetric,
                         symmetry_known=op.symmetry_known)

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.op, self.c)

    def _matmat(self, V: Any) -> Any:
        return self.c * self.op._matmat(V)

    def _rmatmat(self, V: Any) -> Any:
        return self.c * self.op._rmatmat(V)


class ProductOperator(LinearOperator):
    """``A @ B`` applied as ``A @ (B @ V)``; symmetric when it is ``B.T @ B`` or ``B @ B.T``."""

    def __init__(self, A: LinearOperator, B: LinearOperator) -> None:
        check_compatible(A, B, "A @ B")
        if A.shape[1] != B.shape[0]:
            raise ValueError(f"A @ B: inner dimensions of shapes {A.shape} and {B.shape} differ")
        self.A, self.B = A, B
        # B^T B and B B^T (B.T is a TransposeOperator of B, or B itself when B is symmetric)
        # are symmetric by construction; any other product is not known to be
        gram = (isinstance(A, TransposeOperator) and A.op is B) or (isinstance(B, TransposeOperator) and B.op is A) \
            or (A is B and A.is_symmetric)
        super().__init__((A.shape[0], B.shape[1]), _result_dtype(A, B), xp=A.xp, device=A.device, symmetric=gram,
                         symmetry_known=gram or (A.symmetry_known and B.symmetry_known))

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.A, self.B)

    def _matmat(self, V: Any) -> Any:
        W = self.B._matmat(_cast(self.xp, V, self.B.dtype))
        return _cast(self.xp, self.A._matmat(_cast(self.xp, W, self.A.dtype)), self.dtype)

    def _rmatmat(self, V: Any) -> Any:
        W = self.A._rmatmat(_cast(self.xp, V, self.A.dtype))
        return _cast(self.xp, self.B._rmatmat(_cast(self.xp, W, self.B.dtype)), self.dtype)


class TransposeOperator(LinearOperator):
    """``A.T``: swaps the product and the adjoint product of ``A``."""

    def __init__(self, op: LinearOperator) -> None:
        self.op = op
        super().__init__((op.shape[1], op.shape[0]), op.dtype, xp=op.xp, device=op.device)

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.op,)

    def _matmat(self, V: Any) -> Any:
        return self.op._rmatmat(V)

    def _rmatmat(self, V: Any) -> Any:
        return self.op._matmat(V)

    def transpose(self) -> LinearOperator:
        return self.op


class ShiftedOperator(LinearOperator):
    """``A - sigma * I`` for a square ``A`` (one product, one axpy)."""

    def __init__(self, op: LinearOperator, sigma: Any) -> None:
        check_square(op, "A.shift(sigma)")
        self.op, self.sigma = op, as_real_scalar(sigma, "A.shift(sigma)")
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=op.is_symmetric,
                         symmetry_known=op.symmetry_known)

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.op, self.sigma)

    def _matmat(self, V: Any) -> Any:
        return self.op._matmat(V) - self.sigma * V

    def _rmatmat(self, V: Any) -> Any:
        return self.op._rmatmat(V) - self.sigma * V


class PowerOperator(LinearOperator):
    """``A ** p = A @ A @ ... @ A`` (``p`` factors; the identity for ``p = 0``) for a square ``A``: ``p`` products.

    Symmetric when ``A`` is (and for ``p = 0``); its adjoint is ``(A^T) ** p``.
    """

    def __init__(self, op: LinearOperator, p: Any) -> None:
        if not isinstance(op, LinearOperator):
            raise TypeError(f"A ** p: expected a LinearOperator, got {type(op).__name__}")
        if op.shape[0] != op.shape[1]:
            raise ValueError(f"A ** p: square LinearOperator expected, got shape {op.shape}")
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0:
            raise fail("A ** p", "a non-negative integer p", p)
        self.op, self.p = op, int(p)
        super().__init__(op.shape, op.dtype, xp=op.xp, device=op.device, symmetric=op.is_symmetric or self.p == 0,
                         symmetry_known=op.symmetry_known or self.p == 0)

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.op, self.p)

    def _matmat(self, V: Any) -> Any:
        for _ in range(self.p):
            V = self.op._matmat(V)
        return V

    def _rmatmat(self, V: Any) -> Any:
        for _ in range(self.p):
            V = self.op._rmatmat(V)
        return V
