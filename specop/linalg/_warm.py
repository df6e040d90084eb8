"""Warm starts of thick-restart eigsh from a previous result or a block of vectors.

``eigsh(A, k, v0=previous)`` with ``previous`` an :class:`~specop.linalg.thick_restart.EigshResult`
(or an ``(n, j)`` array) starts the Lanczos process from the *sum of its unit-norm vectors*,
``q_1 = sum_i v_i / ||sum_i v_i||``. If the ``v_i`` are close to an invariant subspace of ``A``
(the eigenvectors of a slightly perturbed operator), the first ``j`` Lanczos vectors span them up
to the perturbation (``K_j(A, q_1)`` is that subspace when it is exactly invariant), so the start
costs no product beyond the ``j`` that a block Rayleigh-Ritz step would spend, and the iteration
keeps its Krylov-Schur structure: every residual stays the exact ``|beta_m s_m|`` of the
single-vector process (Stewart, SIAM J. Matrix Anal. Appl. 23, 2001), so the convergence test,
locking and the multiplicity check run unchanged.

Why not a block Rayleigh-Ritz start: measured once on the digits MLP Hessian of
``benchmarks/tracking.py`` one gradient step apart (a one-off measurement, not in the
benchmark), the Rayleigh-Ritz step on the ``k = 10`` previous vectors
lowers their relative residuals from 5e-4..1.5e-3 to 4e-4..7e-4 (the perturbation lies in the
bulk of the spectrum, outside the block), a gain worth about one Lanczos step, for ``k``
products; and a block whose residuals are not collinear leaves no Krylov-Schur decomposition to
continue from (a block, i.e. band, Lanczos process would have to carry ``k`` residual directions).
This is the single start vector ARPACK users build by hand (``v0 = V.sum(1)``), made a part of the
API with its checks: a result of another size, backend or dtype, or one without eigenvectors,
is refused naming ``v0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specop import backends
from specop._validate import Described, fail
from specop.linalg._common import check_v0, column_norms
from specop.operators.base import LinearOperator

__all__ = ["warm_start"]


def _is_result(v0: Any) -> bool:
    """An :class:`EigshResult` (imported late: thick_restart imports this module)."""
    from specop.linalg.thick_restart import EigshResult

    return isinstance(v0, EigshResult)


def warm_start(A: LinearOperator, v0: Any, what: str) -> Any:
    """The start vector of ``v0``: None, a checked ``(n,)`` vector (as :func:`check_v0`, bit for bit),
    or the normalised sum of the unit columns of an ``EigshResult``'s eigenvectors / an ``(n, j)`` block.

    Raises ``ValueError`` (``TypeError`` for another backend or device) naming ``v0`` for a result
    without eigenvectors, of another size or dtype, an empty block, or columns that are zero, not
    finite, or cancel in the sum.
    """
    name = f"{what}: v0"
    if _is_result(v0):
        V = v0.eigenvectors
        if V is None:
            raise fail(name, "an EigshResult with eigenvectors (return_eigenvectors=True) or an array",
                       Described("an EigshResult without eigenvectors"))
        if not backends.is_array(V) or backends.backend_name(V) != A.backend:
            got = backends.backend_name(V) if backends.is_array(V) else type(V).__name__
            raise TypeError(f"{name}: the operator is a {A.backend} operator but the EigshResult's eigenvectors "
                            f"are a {got} array")
        if V.ndim != 2 or V.shape[0] != A.shape[0]:
            raise fail(name, f"an EigshResult of an operator of size n = {A.shape[0]}",
                       Described(f"one with eigenvectors of shape {tuple(V.shape)}"))
        if backends.dtype_name(V.dtype) != backends.dtype_name(A.dtype):
            raise fail(name, f"an EigshResult of a {backends.dtype_name(A.dtype)} operator",
                       Described(f"one with {backends.dtype_name(V.dtype)} eigenvectors"))
    elif backends.is_array(v0) and getattr(v0, "ndim", 1) == 2:
        V = v0
    else:
        return check_v0(A, v0, what)
    V = A._check_input(V, 2, A.shape[0], name)
    if V.shape[1] == 0:
        raise fail(name, "at least one vector", Described(f"a block of shape {tuple(V.shape)}"))
    V = A.xp.astype(V, backends.promote_dtype(A.xp, A.dtype))
    nrm = np.asarray(backends.to_numpy(column_norms(A.xp, V, True)), dtype=np.float64)
    if not (np.isfinite(nrm).all() and (nrm > 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(nrm) & (nrm > 0)))[0])
        raise fail(name, "finite non-zero vectors", Described(f"column {bad} of norm {nrm[bad]}"))
    w = backends.from_numpy(1.0 / nrm, A.xp, A.device, V.dtype)
    q = A.xp.sum(V * w, axis=1)
    size = float(np.asarray(backends.to_numpy(column_norms(A.xp, q[:, None], True)))[0])
    if not size > 1e-8 * np.sqrt(V.shape[1]):  # unit columns that cancel: no direction left to start from
        raise fail(name, "vectors whose sum is not zero", Described(f"unit columns summing to norm {size:.2e}"))
    return q
