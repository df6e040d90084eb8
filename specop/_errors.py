"""Exceptions raised by specop."""

from __future__ import annotations

__all__ = ["NonFiniteError"]


class NonFiniteError(ArithmeticError):
    """A matrix-vector product returned NaN or Inf.

    The message names the algorithm and the step at which the non-finite value
    appeared, so the offending matvec can be reproduced.
    """
