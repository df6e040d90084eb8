"""Spectral density estimates and what a user does with them: evaluate, cdf, plot.

An estimate of the spectral density ``phi(t) = (1/n) sum_i delta(t - lambda_i)`` is
kept per probe, so that the standard error across probes is real, not assumed.

* :class:`SLQDensity` holds Gauss quadrature rules, one per probe: nodes
  ``theta_{r,i}`` (Ritz values) and weights ``tau_{r,i}^2`` (squared first
  components of the Ritz vectors), Golub & Meurant, *Matrices, Moments and
  Quadrature* (2010), Ch. 6; Ubaru, Chen & Saad, SIAM J. Matrix Anal. Appl. 38
  (2017), Eq. 2.8. The density is smoothed by a Gaussian of width ``sigma``
  (Lin, Saad & Yang, SIAM Review 58, 2016, Sec. 3.2).
* :class:`KPMDensity` holds Chebyshev moments per probe, damped by a kernel and
  reconstructed as ``(g_0 mu_0 + 2 sum g_k mu_k T_k(x)) / (pi sqrt(1 - x^2))``
  (Weisse et al. 2006, Eq. 69); its cdf is the closed-form integral of that series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from specop._validate import check_real, fail
from specop.linalg.kpm import damping

__all__ = ["SpectralDensity", "SLQDensity", "KPMDensity"]


def _gauss(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """``sum_i w_i N(grid; node_i, sigma^2)`` for each row of ``nodes``/``weights``: (R, G)."""
    z = (grid[None, None, :] - nodes[:, :, None]) / sigma
    return np.einsum("ri,rig->rg", weights, np.exp(-0.5 * z * z)) / (sigma * np.sqrt(2 * np.pi))


def _points(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 host array of points (``grid``, ``x``); a clear error for anything else."""
    try:
        out = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise fail(name, "real numbers (a scalar or an array)", x) from err
    return out


def _sigma(sigma: Any) -> float | None:
    """``None`` or a smoothing width: a finite real number > 0 (0 divides by zero, < 0 gives negative densities)."""
    return None if sigma is None else check_real(sigma, "sigma", low=0.0, low_open=True)


def _point_width(x: float) -> float:
    """The width standing in for a point spectrum at ``x``: ``|x|`` (relative, so any scale works), 1 at 0."""
    return abs(x) if x != 0.0 else 1.0


@dataclass(frozen=True)
class SpectralDensity:
    """Base of the density estimates (see :class:`SLQDensity`, :class:`KPMDensity`).

    Attributes
    ----------
    matvecs : int
        Products with the operator spent in total.
    n : int
        Size of the operator.
    """

    matvecs: int
    n: int

    @property
    def num_probes(self) -> int:
        """Number of probes the estimate averages."""
        raise NotImplementedError  # abstract: each estimate knows its probes

    def default_grid(self, points: int = 512) -> np.ndarray:
        """An evenly spaced grid over the estimated spectrum (padded by 5%)."""
        lo, hi = self.support()
        pad = 0.05 * (hi - lo) if hi > lo else _point_width(hi)
        return np.linspace(lo - pad, hi + pad, points)

    def support(self) -> tuple[float, float]:
        """Interval that holds the spectrum estimate."""
        raise NotImplementedError  # abstract: each estimate knows its support

    def per_probe(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Density of each probe on ``grid``: shape (probes, len(grid))."""
        raise NotImplementedError  # abstract: each estimate evaluates its own probes

    def evaluate(self, grid: Any, sigma: float | None = None) -> np.ndarray:
        """The density on ``grid`` (mean over probes); it integrates to 1.

        Parameters
        ----------
        grid : array-like
            Points ``t`` (on the host).
        sigma : float, optional
            Width of the Gaussian smoothing. SLQ default: 1% of the spectral
            width. KPM: None gives the plain kernel reconstruction.
        """
        return self.per_probe(_points(grid, "grid"), sigma).mean(axis=0)

    def std_error(self, grid: Any, sigma: float | None = None) -> np.ndarray:
        """Standard error of :meth:`evaluate` across probes (NaN for one probe)."""
        per = self.per_probe(_points(grid, "grid"), sigma)
        if per.shape[0] < 2:
            return np.full(per.shape[1], np.nan)
        return per.std(axis=0, ddof=1) / np.sqrt(per.shape[0])

    def plot(self, ax: Any = None, grid: Any = None, sigma: float | None = None, log: bool = False,
             label: str | None = None, **kwargs: Any) -> Any:
        """Plot the density with matplotlib (imported lazily); returns the axes.

        ``log=True`` uses a logarithmic y axis (the bulk-plus-outliers view of a
        Hessian spectrum); values below ``1e-12`` of the peak are clipped there.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        grid = self.default_grid() if grid is None else _points(grid, "grid")
        y = self.evaluate(grid, sigma)
        if log:
            y = np.maximum(y, 1e-12 * max(float(y.max()), 1e-300))
            ax.set_yscale("log")
        ax.plot(grid, y, label=label, **kwargs)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        return ax


@dataclass(frozen=True)
class SLQDensity(SpectralDensity):
    """Stochastic Lanczos quadrature estimate.

    Attributes
    ----------
    nodes : numpy.ndarray, shape (probes, steps)
        Ritz values per probe (a probe that broke down early is padded with zero weights).
    weights : numpy.ndarray, shape (probes, steps)
        Quadrature weights per probe; each row sums to 1.
    deflated : numpy.ndarray, shape (k,)
        Eigenvalues computed exactly and removed before the probes ran
        (``spectral_density(..., deflate=k)``); each carries mass ``1 / n``, and the
        quadrature rules describe the other ``n - k`` eigenvalues (mass ``1 - k / n``).
    residuals : numpy.ndarray, shape (probes, steps)
        Ritz residual of each node, ``|beta_m s_{m,i}|``: an eigenvalue of the probed
        operator lies within it of the node (empty when not computed).
    """

    nodes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    deflated: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residuals: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def num_probes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def _mass(self) -> float:
        """Mass of the probed (not deflated) part of the spectrum."""
        return 1.0 - self.deflated.size / self.n if self.deflated.size else 1.0

    def support(self) -> tuple[float, float]:
        used = np.concatenate([self.nodes[self.weights > 0], self.deflated])
        return float(used.min()), float(used.max())

    def default_sigma(self) -> float:
        """1% of the spectral width (or 1% of the magnitude for a point spectrum)."""
        lo, hi = self.support()
        return 0.01 * ((hi - lo) if hi > lo else _point_width(hi))

    def per_probe(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        grid, given = _points(grid, "grid"), _sigma(sigma)
        sigma = self.default_sigma() if given is None else given
        dens = self._mass * _gauss(grid, self.nodes, self.weights, sigma)
        if self.deflated.size:  # exact atoms: the same in every probe's estimate
            dens += _gauss(grid, self.deflated[None, :], np.full((1, self.deflated.size), 1.0 / self.n), sigma)
        return dens

    def cdf(self, x: Any, sigma: float | None = None) -> np.ndarray:
        """Fraction of eigenvalues ``<= x`` (a step function; smoothed if ``sigma`` is given)."""
        x, sigma = _points(x, "x"), _sigma(sigma)
        flat = x.reshape(-1)

        def step(nodes: np.ndarray) -> np.ndarray:
            if sigma is None:
                return (nodes[..., None] <= flat).astype(np.float64)
            return ndtr((flat - nodes[..., None]) / sigma)

        out = self._mass * np.einsum("ri,rig->g", self.weights, step(self.nodes)) / self.num_probes
        if self.deflated.size:
            out += step(self.deflated).sum(axis=0) / self.n
        return out.reshape(x.shape)

    def quadrature(self, f: Any) -> np.ndarray:
        """Per-probe Gauss quadrature ``sum_i w_ri f(theta_ri)`` (estimates ``tr f(A) / n``).

        With deflated eigenvalues: ``(1 - k/n) sum_i w_ri f(theta_ri) + (1/n) sum_j f(lambda_j)``.
        """
        q = np.sum(self.weights * f(self.nodes), axis=1)
        if self.deflated.size:
            q = self._mass * q + float(np.sum(f(self.deflated))) / self.n
        return q


@dataclass(frozen=True)
class KPMDensity(SpectralDensity):
    """Kernel polynomial method estimate.

    Attributes
    ----------
    probe_moments : numpy.ndarray, shape (probes, degree + 1)
        Raw Chebyshev moments per probe (``mu_0 = 1``).
    bounds : tuple of float
        Interval mapped onto ``[-1, 1]``.
    kernel : str
        Damping kernel: ``"jackson"``, ``"lorentz"`` or ``"none"``.
    """

    probe_moments: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    bounds: tuple[float, float] = (-1.0, 1.0)
    kernel: str = "jackson"

    @property
    def num_probes(self) -> int:
        return int(self.probe_moments.shape[0])

    @property
    def degree(self) -> int:
        """Degree ``N`` of the Chebyshev expansion."""
        return int(self.probe_moments.shape[1] - 1)

    @property
    def moments(self) -> np.ndarray:
        """Kernel-damped mean moments ``g_k mu_k``."""
        return damping(self.degree, self.kernel) * self.probe_moments.mean(axis=0)

    def support(self) -> tuple[float, float]:
        return self.bounds

    def _scale(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        lo, hi = self.bounds
        return (x - 0.5 * (hi + lo)) / (0.5 * (hi - lo)), 0.5 * (hi - lo)

    def _series(self, xh: np.ndarray) -> np.ndarray:
        """``g_0 mu_0 + 2 sum_k g_k mu_k T_k(xh)`` per probe: (R, G)."""
        g = damping(self.degree, self.kernel)
        T = np.cos(np.arange(self.degree + 1)[:, None] * np.arccos(np.clip(xh, -1, 1))[None, :])
        coef = self.probe_moments * g
        coef[:, 1:] *= 2.0
        return coef @ T

    def per_probe(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        grid, sigma = _points(grid, "grid"), _sigma(sigma)
        if sigma is not None:  # Gaussian smoothing of the expansion, by Gauss-Chebyshev quadrature
            M = max(4 * self.degree, 2048)
            xh = np.cos(np.pi * (np.arange(M) + 0.5) / M)
            lo, hi = self.bounds
            nodes = 0.5 * (hi + lo) + 0.5 * (hi - lo) * xh
            w = self._series(xh) / M
            return _gauss(grid, np.broadcast_to(nodes, w.shape), w, float(sigma))
        xh, half = self._scale(grid)
        inside = np.abs(xh) < 1.0
        dens = np.zeros((self.num_probes, grid.size))
        xi = xh[inside]
        dens[:, inside] = self._series(xi) / (np.pi * np.sqrt(1.0 - xi * xi) * half)
        return dens

    def cdf(self, x: Any, sigma: float | None = None) -> np.ndarray:
        """Integral of the reconstructed density up to ``x`` (closed form of the series)."""
        x, sigma = _points(x, "x"), _sigma(sigma)
        if sigma is not None:
            M = max(4 * self.degree, 2048)
            xh = np.cos(np.pi * (np.arange(M) + 0.5) / M)
            lo, hi = self.bounds
            nodes = 0.5 * (hi + lo) + 0.5 * (hi - lo) * xh
            w = self._series(xh).mean(axis=0) / M
            return (w[None, :] * ndtr((x.reshape(-1)[:, None] - nodes[None, :]) / sigma)).sum(axis=1).reshape(x.shape)
        xh, _ = self._scale(x.reshape(-1))
        lo, hi = self.bounds
        flat = x.reshape(-1)  # exact 0 and 1 outside the interval, free of arccos rounding at its ends
        phi = np.where(flat >= hi, 0.0, np.where(flat <= lo, np.pi, np.arccos(np.clip(xh, -1.0, 1.0))))
        g = damping(self.degree, self.kernel)
        mu = self.probe_moments.mean(axis=0) * g
        k = np.arange(1, self.degree + 1)
        tail = (mu[1:, None] * np.sin(k[:, None] * phi[None, :]) / k[:, None]).sum(axis=0)
        return (mu[0] * (np.pi - phi) / np.pi - (2.0 / np.pi) * tail).reshape(x.shape)
