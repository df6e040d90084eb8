"""Kernel polynomial method: Chebyshev moments of the spectral density.

Follows Weisse, Wellein, Alvermann & Fehske, "The kernel polynomial method",
Rev. Mod. Phys. 78, 275 (2006): the operator is mapped affinely onto ``[-1, 1]``
(Sec. II.A), the moments ``mu_k = tr T_k(A_hat) / n`` are estimated stochastically
with the three-term recurrence ``t_{k+1} = 2 A_hat t_k - t_{k-1}`` and the doubling
identities ``mu_{2k} = 2 <t_k, t_k> - mu_0`` and ``mu_{2k+1} = 2 <t_{k+1}, t_k> - mu_1``
(Eq. 75), so ``N`` moments cost ``N / 2`` matvecs; the truncated series is damped
by the Jackson kernel (Eq. 71) or the Lorentz kernel (Eq. 80) to suppress Gibbs
oscillations. Spectral bounds come from a short Lanczos run (Ritz extremes widened
by their residuals and by a safety margin of 1% of the width).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop.linalg.lanczos import lanczos

__all__ = ["KERNELS", "damping", "estimate_bounds", "chebyshev_moments"]

KERNELS = ("jackson", "lorentz", "none")


def damping(degree: int, kernel: str = "jackson", lorentz_lambda: float = 4.0) -> np.ndarray:
    """Kernel coefficients ``g_0 .. g_N`` (Weisse et al. 2006, Eqs. 71 and 80)."""
    k = np.arange(degree + 1, dtype=np.float64)
    if kernel == "jackson":
        q = np.pi / (degree + 2)
        return ((degree + 2 - k) * np.cos(q * k) + np.sin(q * k) / np.tan(q)) / (degree + 2)
    if kernel == "lorentz":
        return np.sinh(lorentz_lambda * (1.0 - k / (degree + 1))) / np.sinh(lorentz_lambda)
    return np.ones_like(k)


def estimate_bounds(A: Any, seed: Any, steps: int = 20, margin: float = 0.01) -> tuple[tuple[float, float], int]:
    """Interval containing the spectrum of ``A``: ``((lo, hi), matvecs)``.

    Ritz extremes of a short fully reorthogonalized Lanczos run, widened by their
    residual norms ``|beta_m s_mi|`` (each Ritz interval holds an eigenvalue) and
    by ``margin`` times the width.
    """
    res = lanczos(A, steps=min(steps, A.shape[0]), reorth="full", seed=seed, check_symmetric=False)
    theta, S = res.ritz()
    rho = abs(res.beta[-1]) * np.abs(S[-1])
    lo, hi = theta[0] - rho[0], theta[-1] + rho[-1]
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    scale = max(abs(lo), abs(hi))
    # a (near-)scalar spectrum: widen to a relative floor, so that the mapped operator's rounding
    # (eps ||A|| / width per product) stays small and a grid of host floats resolves the interval
    floor = max(1e-6, 1e3 * eps) * scale if scale > 0 else 1.0
    if hi - lo < floor:
        mid = 0.5 * (hi + lo)
        lo, hi = mid - 0.5 * floor, mid + 0.5 * floor
    width = hi - lo
    return (float(lo - margin * width), float(hi + margin * width)), res.matvecs


def _dots(xp: Any, X: Any, Y: Any) -> Any:
    """``X_c . Y_c`` of each column pair: a (b,) array."""
    return xp.sum(X * Y, axis=0)


@backends.kernel
def _chebyshev_first(xp: Any, AV: Any, V: Any, center: Any, half: Any) -> tuple[Any, Any, list[Any]]:
    """``(t_0, t_1, [(<t_0, t_0>, <t_0, t_1>)])`` from ``AV = A V``: the mapped operator's first product."""
    T_cur = (AV - center * V) / half
    return V, T_cur, [xp.stack([_dots(xp, V, V), _dots(xp, V, T_cur)])]


@backends.kernel
def _chebyshev_step(xp: Any, AT: Any, T_cur: Any, T_prev: Any, center: Any, half: Any) -> tuple[Any, Any]:
    """``(t_{k+1}, [<t_k, t_k>, <t_{k+1}, t_k>])`` from ``AT = A t_k``: one step, one program on JAX."""
    T_next = 2.0 * ((AT - center * T_cur) / half) - T_prev
    return T_next, xp.stack([_dots(xp, T_cur, T_cur), _dots(xp, T_next, T_cur)])


def chebyshev_moments(A: Any, V: Any, degree: int, bounds: tuple[float, float], rdt: Any,
                      what: str, estimated: bool = False, first: int = 0) -> tuple[np.ndarray, int]:
    """Moments ``v^T T_k(A_hat) v / v^T v`` for each column ``v`` of ``V`` (n, b).

    Returns the ``(b, degree + 1)`` moments and the matvecs spent per column.
    ``estimated`` says that ``bounds`` came from :func:`estimate_bounds`, not from the
    user (the error for bounds that miss the spectrum then says so). Column ``c`` is named
    probe ``first + c`` in the error for a NaN/Inf product.
    """
    xp = A.xp
    lo, hi = bounds
    center, half = 0.5 * (hi + lo), 0.5 * (hi - lo)

    def product(T: Any) -> Any:
        return backends.astype(A.matmat(backends.astype(T, A.dtype, xp)), rdt, xp)

    V = backends.astype(V, rdt, xp)
    T_prev, T_cur, acc = _chebyshev_first(xp, product(V), V, center, half)  # acc[k]: mu_k (raw, before doubling)
    matvecs, count = 1, 2
    while count + 1 <= degree:  # acc holds mu_0..mu_{L-1}; one matvec adds mu_L, mu_{L+1}
        T_next, pair = _chebyshev_step(xp, product(T_cur), T_cur, T_prev, center, half)
        matvecs += 1
        acc.append(pair)
        count += 2
        T_prev, T_cur = T_cur, T_next
    if count == degree:  # even degree: mu_N = 2 <t_{N/2}, t_{N/2}> - mu_0 needs no matvec
        acc.append(xp.stack([_dots(xp, T_cur, T_cur)] * 2))  # one pair's shape; the copy is cut below
    raw = np.concatenate(backends.stack_to_numpy(acc), axis=0).T.astype(np.float64)[:, : degree + 1]
    for c in np.flatnonzero(~np.isfinite(raw).all(axis=1)):
        i = int(np.flatnonzero(~np.isfinite(raw[c]))[0])
        # acc[0] = <v, v> needs no product; acc[2j-1], acc[2j] hold t_j, the product at step j - 1 (0-based)
        if i == 0:
            raise NonFiniteError(f"{what} (probe {first + c}): kpm: the probe vector holds NaN or Inf")
        raise NonFiniteError(f"{what} (probe {first + c}): kpm: the matvec at step {(i - 1) // 2} returned NaN or Inf")
    k = np.arange(raw.shape[1])
    base = np.where(k % 2 == 0, raw[:, :1], raw[:, 1:2] if raw.shape[1] > 1 else raw[:, :1])
    mu = np.where(k < 2, raw, 2.0 * raw - base) / raw[:, :1]
    # |mu_k| <= 1 when the spectrum is inside; allow the mapped operator's rounding to accumulate
    eps = float(np.finfo(backends.dtype_name(A.dtype)).eps)
    slack = 1e-6 + 10 * (degree + 1) * eps * max(abs(lo), abs(hi)) / half
    if np.max(np.abs(mu)) > 1.0 + slack:
        if estimated:
            raise ValueError(f"{what}: the bounds {bounds} estimated by a short Lanczos run do not contain "
                             f"the spectrum (a Chebyshev moment reached {np.max(np.abs(mu)):.3g} > 1); "
                             "pass bounds=(lo, hi) that do")
        raise ValueError(f"{what}: bounds {bounds} do not contain the spectrum "
                         f"(a Chebyshev moment reached {np.max(np.abs(mu)):.3g} > 1); widen them")
    return mu, matvecs
