"""A drop-in :mod:`scipy.sparse.linalg` for every backend specop supports.

Same names, signatures, defaults, return values and exceptions as scipy's (1.17), on
numpy, torch, JAX, CuPy and array-api-strict arrays, scipy sparse matrices and any specop or
scipy operator; results are arrays of the input's backend, dtype and device. The work is
done by specop's own algorithms (:mod:`specop.linalg`). Every deviation from scipy is listed
in the documentation page "specop.sparse.linalg: scipy drop-in" (``docs/howto/scipy.md``);
arguments of scipy's that specop cannot honour yet raise :class:`NotImplementedError`.
"""

from specop.sparse.linalg._eigen import ArpackError, ArpackNoConvergence, eigsh, lobpcg, svds
from specop.sparse.linalg._interface import LinearOperator, aslinearoperator, expm_multiply, onenormest
from specop.sparse.linalg._isolve import cg, gmres, lsmr, lsqr, minres

__all__ = [
    "LinearOperator",
    "aslinearoperator",
    "eigsh",
    "svds",
    "lobpcg",
    "cg",
    "minres",
    "gmres",
    "lsqr",
    "lsmr",
    "expm_multiply",
    "onenormest",
    "ArpackError",
    "ArpackNoConvergence",
]
