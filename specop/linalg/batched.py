"""Independent Lanczos recurrences on the columns of a block, advanced in lockstep.

Spectral densities need many short Lanczos runs without reorthogonalization, one
per probe. Running ``b`` of them together turns ``b`` matvecs into one ``matmat``
per step (a GEMM for dense operators, one vmapped pass for curvature operators),
which is where a batched run gains its speed; the arithmetic of each column is
that of :func:`specop.linalg.lanczos` with ``reorth="none"`` (Paige's variant of
the recurrence, Golub & Van Loan Alg. 10.1.1). A column that breaks down keeps
running on finite garbage (its beta is guarded) and is cut at its breakdown step
afterwards, so no host synchronisation is needed per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specop import backends
from specop.linalg._common import check_finite, column_norms
from specop.linalg.lanczos import _first_breakdown

__all__ = ["lanczos_columns"]


def lanczos_columns(A: Any, V: Any, steps: int, rdt: Any, what: str,
                    first: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run ``steps`` Lanczos steps from each column of ``V`` (n, b); ``[(alpha, beta), ...]`` per column.

    Column ``c`` is named probe ``first + c`` in the error for a NaN/Inf product.
    """
    xp = A.xp
    n = A.shape[0]
    host = backends.is_host(xp, A.device)
    V = backends.astype(V, rdt, xp)
    V = V / column_norms(xp, V, host)
    V_prev, b_prev = None, None
    alphas, betas = [], []
    for _ in range(steps):
        W = backends.astype(A.matmat(backends.astype(V, A.dtype, xp)), rdt, xp)
        if W is V:
            W = xp.asarray(W, copy=True)
        if V_prev is not None:
            W = W - b_prev * V_prev
        a = xp.sum(W * V, axis=0)
        W = W - a * V
        b = column_norms(xp, W, host)
        alphas.append(a)
        betas.append(b)
        V_prev, b_prev = V, b
        # |W_i| <= b, so W / b is finite for any b > 0; the breakdown test (relative) runs afterwards
        V = W / xp.where(b > 0, b, xp.ones_like(b))
    alpha = backends.to_numpy(xp.stack(alphas, axis=1)).astype(np.float64)
    beta = backends.to_numpy(xp.stack(betas, axis=1)).astype(np.float64)
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    out = []
    for c in range(alpha.shape[0]):
        stop = _first_breakdown(alpha[c], beta[c], 0, n, eps, 0.0)
        end = steps if stop is None else stop + 1
        finite = np.isfinite(alpha[c, :end]) & np.isfinite(beta[c, :end])  # both come from the product at step j
        check_finite(np.where(finite, 0.0, np.nan), f"{what} (probe {first + c}): lanczos", 0)
        out.append((alpha[c, :end], beta[c, :end]))
    return out
