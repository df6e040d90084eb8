"""Spectral algorithms on any :class:`~specop.operators.LinearOperator` (backend-free code)."""

__all__: list[str] = []
