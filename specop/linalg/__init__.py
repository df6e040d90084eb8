"""Spectral algorithms on any :class:`~specop.operators.LinearOperator` (backend-free code)."""

from specop.linalg.density import KPMDensity, SLQDensity, SpectralDensity
from specop.linalg.gmres import GmresResult, gmres
from specop.linalg.lanczos import LanczosResult, lanczos
from specop.linalg.lobpcg import LobpcgResult, lobpcg
from specop.linalg.lsqr import LsqrResult, lsqr
from specop.linalg.onenormest import OneNormEstimate, onenormest
from specop.linalg.spectral import spectral_density
from specop.linalg.svds import SvdsResult, svds
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
    "svds",
    "SvdsResult",
    "lobpcg",
    "LobpcgResult",
    "gmres",
    "GmresResult",
    "lsqr",
    "LsqrResult",
    "onenormest",
    "OneNormEstimate",
]
