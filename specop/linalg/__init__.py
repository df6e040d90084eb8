"""Spectral algorithms on any :class:`~specop.operators.LinearOperator` (backend-free code)."""

from specop.linalg.lanczos import LanczosResult, lanczos
from specop.linalg.thick_restart import EigshResult, eigsh

__all__ = ["lanczos", "LanczosResult", "eigsh", "EigshResult"]
