"""Spectral algorithms on any :class:`~specop.operators.LinearOperator` (backend-free code)."""

from specop.linalg._solver_common import SolveResult
from specop.linalg.cg import cg
from specop.linalg.density import KPMDensity, SLQDensity, SpectralDensity
from specop.linalg.diagonal import DiagonalEstimate, diagonal, frobenius_norm_squared
from specop.linalg.funm import FunmResult, expm_multiply, funm_multiply
from specop.linalg.gmres import GmresResult, gmres
from specop.linalg.inverse import (
    InnerSolveError,
    InverseOperator,
    LowRankPreconditioner,
    nystrom_preconditioner,
    solve,
    spectral_preconditioner,
)
from specop.linalg.lanczos import LanczosResult, lanczos
from specop.linalg.lobpcg import LobpcgResult, lobpcg
from specop.linalg.lsmr import LsmrResult, lsmr
from specop.linalg.lsqr import LsqrResult, lsqr
from specop.linalg.minres import minres
from specop.linalg.onenormest import OneNormEstimate, onenormest
from specop.linalg.spectral import spectral_density
from specop.linalg.svds import SvdsResult, svds
from specop.linalg.thick_restart import EigshResult, eigsh
from specop.linalg.trace import Estimate, logdet, trace
from specop.linalg.tracking import Tracker, TrackRecord

__all__ = [
    "lanczos",
    "LanczosResult",
    "eigsh",
    "EigshResult",
    "Tracker",
    "TrackRecord",
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
    "cg",
    "minres",
    "lsmr",
    "SolveResult",
    "LsmrResult",
    "solve",
    "InverseOperator",
    "InnerSolveError",
    "LowRankPreconditioner",
    "spectral_preconditioner",
    "nystrom_preconditioner",
    "funm_multiply",
    "expm_multiply",
    "FunmResult",
    "diagonal",
    "DiagonalEstimate",
    "frobenius_norm_squared",
]
