"""Exceptions raised by specop."""

from __future__ import annotations

__all__ = ["NonFiniteError", "ConvergenceWarning"]


class NonFiniteError(ArithmeticError):
    """A matrix-vector product returned NaN or Inf.

    The message names the algorithm and the step at which the non-finite value
    appeared, so the offending matvec can be reproduced.
    """


class ConvergenceWarning(RuntimeWarning):
    """An iterative method stopped at its iteration limit before meeting its tolerance.

    The result it returns holds everything computed so far, with its residuals.
    """
