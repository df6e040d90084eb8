"""Spectral algorithms on any :class:`~specop.operators.LinearOperator` (backend-free code)."""

from specop.linalg.density import KPMDensity, SLQDensity, SpectralDensity
from specop.linalg.lanczos import LanczosResult, lanczos
from specop.linalg.spectral import spectral_density
from specop.linalg.thick_restart import EigshResult, eigsh
from specop.linalg.trace import Estimate, logdet, trace

__all__ = [
    "lanczos",
    "LanczosResult",
    "eigsh",
    "EigshResult",
    "spectral_density",
    "SpectralDensity",
    "SLQDensity",
    "KPMDensity",
    "trace",
    "logdet",
    "Estimate",
]
