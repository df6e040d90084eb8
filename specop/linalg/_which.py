"""Which Ritz values eigsh wants, keeps at a restart, and checks in its verification run.

Pure functions of the Ritz values (host numpy arrays), shared by the thick-restart
iteration in :mod:`specop.linalg.thick_restart`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wanted", "kept", "settled"]


def wanted(values: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the ``k`` values wanted by ``which`` (best first)."""
    k = min(k, values.size)
    if which == "LA":
        return np.argsort(-values, kind="stable")[:k]
    if which == "SA":
        return np.argsort(values, kind="stable")[:k]
    if which == "LM":
        return np.argsort(-np.abs(values), kind="stable")[:k]
    if which == "SM":
        return np.argsort(np.abs(values), kind="stable")[:k]
    top, bottom = k - k // 2, k // 2
    order = np.argsort(values, kind="stable")
    return np.concatenate([order[::-1][:top], order[:bottom]])


def kept(values: np.ndarray, count: int, which: str, k: int,
          settled: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Indices of the ``count`` Ritz values kept at a restart.

    The wanted end(s) first, as :func:`wanted`; for "BE" the two ends in the proportion
    of the wanted pairs (``k = 1`` keeps only the top). In the verification run an end
    that is not yet ``settled`` (top, bottom; see :func:`settled`) also keeps its
    extreme Ritz vector, so that it converges instead of being rebuilt at every restart.
    """
    if which == "BE":
        bottom = count * (k // 2) // k
        order = np.argsort(values, kind="stable")
        idx = list(np.concatenate([order[::-1][: count - bottom], order[:bottom]]))
    else:
        idx = list(wanted(values, count, which))
    ends = [int(np.argmax(values)), int(np.argmin(values))]
    for end, ok in zip(ends, settled, strict=True):
        if not ok and end not in idx and count >= 2:
            pos = max(i for i, j in enumerate(idx) if j not in ends)
            idx[pos] = end
    return np.asarray(idx, dtype=int)


def settled(theta: np.ndarray, rho: np.ndarray, wanted: np.ndarray, which: str, margin: float) -> tuple[bool, bool]:
    """Whether the deflated top and bottom extremes are settled clear of the wanted set's edge.

    An eigenvalue that only ties with the edge of the wanted set changes no wanted
    value; one beyond it would. Each relevant extreme Ritz pair ``(theta, rho)`` of
    the verification run must stay inside the edge (``theta + rho <= edge + margin``)
    and be settled, ``rho <= gap / 4`` with ``gap = |edge - theta|``: a random start
    vector has its largest weight on the extreme eigenvectors, so an extreme Ritz
    pair that has converged that far is the extreme eigenpair of the deflated operator
    unless the start vector was nearly orthogonal to a missed one. An end that does not
    border the wanted set (the bottom for "LA", ...) counts as settled; "SM" wants the interior,
    which no end borders: both count as settled, and only a missed copy that converges within
    the check's first steps is found (like ARPACK, "SM" may miss copies of a repeated eigenvalue).
    """
    if theta.size == 0 or which == "SM":
        return True, True
    hi, lo = int(np.argmax(theta)), int(np.argmin(theta))

    def inside(i: int, edge: float, up: bool) -> bool:
        gap = (edge - theta[i]) if up else (theta[i] - edge)
        return bool(gap + margin >= rho[i] and rho[i] <= 0.25 * max(gap, 0.0) + margin)

    w_sorted = np.sort(wanted)
    if which == "LA":
        return inside(hi, w_sorted[0], True), True
    if which == "SA":
        return True, inside(lo, w_sorted[-1], False)
    if which == "LM":
        e = float(np.abs(wanted).min())
        return inside(hi, e, True), inside(lo, -e, False)
    n_top, n_bot = wanted.size - wanted.size // 2, wanted.size // 2
    return (inside(hi, w_sorted[::-1][:n_top].min(), True),
            n_bot == 0 or inside(lo, w_sorted[:n_bot].max(), False))
