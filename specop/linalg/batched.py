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
from specop.linalg._common import check_finite
from specop.linalg._krylov import RecurrenceView, first_breakdown, normalize, safe_norm, three_term
from specop.linalg._krylov_util import eps_of

__all__ = ["lanczos_columns"]


def lanczos_columns(A: Any, V: Any, steps: int, rdt: Any, what: str,
                    first: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run ``steps`` Lanczos steps from each column of ``V`` (n, b); ``[(alpha, beta), ...]`` per column.

    Column ``c`` is named probe ``first + c`` in the error for a NaN/Inf product.
    """
    xp = A.xp
    host = backends.is_host(xp, A.device)
    Av = RecurrenceView(A, rdt)
    Q = backends.astype(V, rdt, xp)
    Q = Q / safe_norm(xp, Q, host)
    Q_prev, b_prev = None, None
    alphas, betas = [], []
    for _ in range(steps):
        W, a = three_term(xp, Av @ Q, Q, Q_prev, b_prev)
        b = safe_norm(xp, W, host)
        alphas.append(a)
        betas.append(b)
        # a column that broke down runs on (its beta guarded); the breakdown test (relative) runs afterwards
        Q_prev, b_prev, Q = Q, b, normalize(xp, W, b)
    alpha = backends.stack_to_numpy(alphas, axis=1).astype(np.float64)
    beta = backends.stack_to_numpy(betas, axis=1).astype(np.float64)
    eps = eps_of(A.dtype)
    out = []
    for c in range(alpha.shape[0]):
        stop = first_breakdown(alpha[c], beta[c], 0, eps, 0.0)
        end = steps if stop is None else stop + 1
        finite = np.isfinite(alpha[c, :end]) & np.isfinite(beta[c, :end])  # both come from the product at step j
        check_finite(np.where(finite, 0.0, np.nan), f"{what} (probe {first + c}): lanczos", 0)
        out.append((alpha[c, :end], beta[c, :end]))
    return out
