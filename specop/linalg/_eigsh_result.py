"""The result of :func:`specop.eigsh` and its dense path (all eigenpairs by LAPACK)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop.linalg._common import rounding_asymmetry, symmetry_refusal
from specop.linalg._which import wanted

__all__ = ["EigshResult"]


@dataclass(frozen=True)
class EigshResult:
    """Outcome of :func:`eigsh`; unpacks as ``w, v = eigsh(...)`` like scipy.

    Attributes
    ----------
    eigenvalues : numpy.ndarray, shape (k,)
        Ascending (scipy's order), float64 on the host.
    eigenvectors : array of shape (n, k) or None
        Columns match ``eigenvalues``; the operator's backend, dtype and device.
    residual_norms : numpy.ndarray, shape (k,)
        ``||A v - w v||`` estimates of each pair.
    matvecs : int
        Products with ``A`` spent.
    converged : bool
        Whether every pair met the tolerance.
    restarts : int
        Number of thick restarts.
    verified : bool
        Whether the multiplicity check settled (see :func:`eigsh`'s ``verify``):
        False when it was switched off or the run hit ``maxiter``.
    """

    eigenvalues: np.ndarray
    eigenvectors: Any = field(repr=False)
    residual_norms: np.ndarray
    matvecs: int
    converged: bool
    restarts: int = 0
    verified: bool = False

    def __iter__(self):
        yield self.eigenvalues
        yield self.eigenvectors


def _dense(A: Any, k: int, which: str, vectors: bool, check: bool) -> EigshResult:
    """All eigenpairs of ``to_dense()`` by LAPACK; ``check``: refuse a matrix that is not symmetric.

    With ``check`` the whole matrix is compared with its transpose: a difference beyond the
    rounding of its products (``1e3 eps sqrt(n) max |A|``; zero for a dense matrix) is refused,
    one within it is averaged away (as is any difference without ``check``: an operator
    symmetric by construction whose products are inexact).
    """
    D = backends.to_numpy(A.to_dense()).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(D).all(axis=0))
    if bad.size:
        raise NonFiniteError(f"eigsh (dense path): the product A @ e_j returned NaN or Inf for column j = {bad[0]}")
    if check:
        asym, top = float(np.max(np.abs(D - D.T))), float(np.max(np.abs(D)))
        tol = rounding_asymmetry(A)
        if asym > tol * top:
            raise symmetry_refusal("eigsh", f"max |A - A^T| = {asym:.3g} = {asym / top:.2e} max |A| > "
                                   f"{tol:.1e} max |A| (the whole matrix, dense path)")
    w, V = np.linalg.eigh((D + D.T) / 2)
    idx = np.sort(wanted(w, k, which))
    vecs = None
    if vectors:
        vecs = backends.from_numpy(V[:, idx], A.xp, A.device, A.dtype)
    return EigshResult(w[idx], vecs, np.zeros(idx.size), A.shape[0], True, 0, True)
