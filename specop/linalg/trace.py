"""Stochastic trace estimators: Hutchinson, Hutch++ and SLQ for ``tr f(A)``.

* Hutchinson (Hutchinson, Commun. Stat. Simul. Comput. 19, 1990):
  ``tr A ~ (1/m) sum_r z_r^T A z_r`` with Rademacher ``z_r``.
* Hutch++ (Meyer, Musco, Musco & Woodruff, "Hutch++: optimal stochastic trace
  estimation", SOSA 2021, Algorithm 1): a third of the budget sketches the top of
  the range ``Q = orth(A S)``, whose trace is taken exactly, and Hutchinson
  estimates the rest on ``(I - QQ^T) A (I - QQ^T)``; exact when ``rank A <= m/3``.
* SLQ (Ubaru, Chen & Saad, SIAM J. Matrix Anal. Appl. 38, 2017):
  ``tr f(A) ~ (n/m) sum_r sum_i tau_{ri}^2 f(theta_{ri})``.

Every estimate reports its standard error from the spread of its samples and the
matvecs it spent. Products are formed in float64 on the operator's device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop._validate import Described, check_seed, fail
from specop.linalg._common import (
    REORTH,
    SYMMETRY_MODES,
    check_choice,
    check_positive_int,
    ensure_symmetric,
    prepare,
    recurrence_dtype,
)
from specop.linalg.density import SLQDensity
from specop.linalg.spectral import spectral_density
from specop.random import probes, resolve_seed

__all__ = ["trace", "logdet", "Estimate", "FUNCTIONS"]

#: Named matrix functions for ``trace(..., f=...)``.
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log,
    "inv": lambda t: 1.0 / t,
    "exp": np.exp,
    "sqrt": lambda t: np.sqrt(np.maximum(t, 0.0)),  # after the domain check: a zero eigenvalue's rounding
}
_POSITIVE = ("log", "inv", "sqrt")


@dataclass(frozen=True)
class Estimate:
    """A stochastic estimate.

    Attributes
    ----------
    value : float
        The estimate.
    std_error : float
        Standard error (sample standard deviation / sqrt(samples)); NaN for one sample.
    matvecs : int
        Products with the operator spent.
    samples : numpy.ndarray
        The per-probe samples the value averages (plus the exact part for Hutch++).
    method : str
        Estimator used.
    """

    value: float
    std_error: float
    matvecs: int
    samples: np.ndarray = field(repr=False)
    method: str

    def __float__(self) -> float:
        return self.value


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    """Mean and standard error; in units of ``max |sample|`` where the squares would overflow or underflow."""
    s = float(np.max(np.abs(samples))) if samples.size else 0.0
    s = s if not 1e-140 < s < 1e140 and 0.0 < s < np.inf else 1.0
    u = samples / s if s != 1.0 else samples
    se = float(u.std(ddof=1) / np.sqrt(samples.size)) * s if samples.size > 1 else float("nan")
    return float(u.mean()) * s, se


def _quadratic_forms(A: Any, Z: Any, rdt: Any, what: Callable[[int], str]) -> np.ndarray:
    """``z_r^T A z_r`` for the columns of ``Z`` (float64 on the host); ``what(c)`` names column ``c``'s product."""
    xp = A.xp
    AZ = xp.astype(A.matmat(xp.astype(Z, A.dtype)), rdt)
    q = backends.to_numpy(xp.sum(xp.astype(Z, rdt) * AZ, axis=0)).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(q))
    if bad.size:  # a non-finite product (a finite A z of huge entries cannot overflow z . A z in float64 here)
        raise NonFiniteError(f"{what(int(bad[0]))} returned NaN or Inf")
    return q


def _hutchinson(A: Any, n: int, m: int, key: int, block: int, rdt: Any) -> np.ndarray:
    parts = []
    for s in range(0, m, block):
        def what(c: int, s: int = s) -> str:
            return f"trace (hutchinson): the matvec of probe {s + c}"

        parts.append(_quadratic_forms(A, probes(n, min(block, m - s), seed=key, like=A, start=s), rdt, what))
    return np.concatenate(parts)


def _hutchpp(A: Any, n: int, m: int, key: int, rdt: Any) -> tuple[float, np.ndarray]:
    """Exact trace on the sketched range and Hutchinson samples of the deflated rest."""
    xp = A.xp
    s = m // 3
    S = probes(n, s, seed=key, like=A, start=0)
    Y = xp.astype(A.matmat(S), rdt)
    # Q spans range(A S) whatever the scale of Y: divide by max |Y| first, so that a QR without
    # scaled norms (XLA's) neither underflows nor overflows at ||A|| ~ 1e-300 or 1e300
    top = xp.max(xp.abs(Y))
    if not np.isfinite(float(top)):
        bad = np.flatnonzero(~np.isfinite(backends.to_numpy(Y)).all(axis=0))
        raise NonFiniteError(f"trace (hutch++): the sketch matvec of probe {int(bad[0])} returned NaN or Inf")
    Q, _ = xp.linalg.qr(Y / xp.where(top > 0, top, xp.ones_like(top)))
    exact = float(backends.to_numpy(xp.sum(Q * xp.astype(A.matmat(xp.astype(Q, A.dtype)), rdt))))
    if not np.isfinite(exact):
        raise NonFiniteError("trace (hutch++): the matvec of the sketched basis Q returned NaN or Inf")
    G = xp.astype(probes(n, m - 2 * s, seed=key, like=A, start=s), rdt)
    G = G - Q @ (Q.T @ G)
    return exact, _quadratic_forms(A, G, rdt, lambda c: f"trace (hutch++): the matvec of probe {s + c}")


def trace(A: Any, *, method: str | None = None, f: str | Callable[[np.ndarray], np.ndarray] | None = None,
          num_probes: int = 30, steps: int = 30, seed: Any = None, reorth: str = "full", block: int = 16,
          check_symmetric: bool | str = "auto") -> Estimate:
    """Estimate ``tr A`` or ``tr f(A)``.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square operator (symmetric for ``f`` and ``"slq"``).
    method : {"hutchinson", "hutch++", "slq"}, optional
        Default ``"hutchinson"``, or ``"slq"`` when ``f`` is given.
    f : {"log", "inv", "exp", "sqrt"} or callable, optional
        Matrix function (SLQ only); a callable maps Ritz values (numpy array) to values.
        log and inv need a positive definite operator, sqrt a semidefinite one: a Ritz value
        ``<= 0`` (``< 0``) is an error, a Ritz interval reaching 0 a ``RuntimeWarning`` with the
        numbers (see the docs, "what SLQ can see").
    num_probes : int
        Probes (Hutchinson, SLQ) or total matvec budget (Hutch++, at least 3).
    steps : int
        Lanczos steps per probe (SLQ).
    seed : int, numpy Generator or None
        Seed of the probes.
    reorth : {"full", "selective", "none"}
        Lanczos reorthogonalization (SLQ).
    block : int
        Probes per ``matmat`` call (Hutchinson).
    check_symmetric : {"auto", True, False}
        Symmetry test for SLQ (``method="slq"`` or ``f`` given), as in :func:`specop.eigsh`
        (``"auto"``: refuse ``is_symmetric=False``, trust known symmetry, test a claim with
        two products); Hutchinson and Hutch++ need no symmetry (``True`` tests it anyway).

    Returns
    -------
    Estimate
    """
    method = method or ("slq" if f is not None else "hutchinson")
    check_choice(method, "method", ("hutchinson", "hutch++", "slq"))
    A, n = prepare(A, "trace", symmetric=method == "slq")
    check_choice(reorth, "reorth", REORTH)
    num_probes = check_positive_int(num_probes, "num_probes", 3 if method == "hutch++" else 1)
    block = check_positive_int(block, "block")
    steps = check_positive_int(steps, "steps")
    check_seed(seed)
    check_choice(check_symmetric, "check_symmetric", SYMMETRY_MODES)
    if f is not None and method != "slq":
        raise fail("method", "method='slq' (or None) with a matrix function f", method)
    if isinstance(f, str) and f not in FUNCTIONS:
        raise fail("f", f"one of {tuple(FUNCTIONS)}, a callable or None", f)
    if f is not None and not isinstance(f, str) and not callable(f):
        raise fail("f", f"one of {tuple(FUNCTIONS)}, a callable or None", f, TypeError)
    checked = ensure_symmetric(A, "trace", check_symmetric if method == "slq" else check_symmetric is True)
    key, rdt = resolve_seed(seed), recurrence_dtype(A, "float64")
    if method == "hutchinson":
        samples = _hutchinson(A, n, num_probes, key, block, rdt)
        value, se = _mean_se(samples)
        return Estimate(value, se, num_probes + checked, samples, method)
    if method == "hutch++":
        exact, samples = _hutchpp(A, n, num_probes, key, rdt)
        mean, se = _mean_se(samples) if samples.size else (0.0, 0.0)
        return Estimate(exact + mean, se, num_probes + checked, samples, method)
    dens = spectral_density(A, method="slq", num_probes=num_probes, steps=steps, seed=key, reorth=reorth,
                            check_symmetric=False)
    assert isinstance(dens, SLQDensity)
    name = f if isinstance(f, str) else None
    fn: Callable[[np.ndarray], np.ndarray] = (FUNCTIONS[f] if isinstance(f, str) else
                                               f if f is not None else (lambda t: t))
    if name in _POSITIVE:
        _check_domain(dens, name, 4 * n * float(np.finfo(backends.dtype_name(A.dtype)).eps))
    with np.errstate(all="ignore"):  # a non-finite value is reported below, with the node it came from
        values = np.asarray(fn(dens.nodes), dtype=np.float64)
    bad = (dens.weights > 0) & ~np.isfinite(values)
    if bad.any():
        r, i = (int(j[0]) for j in np.nonzero(bad))
        raise fail("f", "a function finite at the Ritz values", Described(
            f"f({dens.nodes[r, i]:.6g}) = {values[r, i]} (probe {r}, node {i})"))
    samples = n * dens.quadrature(fn)
    value, se = _mean_se(samples)
    return Estimate(value, se, dens.matvecs + checked, samples, method)


def _check_domain(dens: SLQDensity, name: str, rel: float) -> None:
    """What SLQ can see of the spectrum's lower end, for ``f`` = log, inv (positive definite) and sqrt (semidefinite).

    Every Ritz value lies in ``[lambda_min, lambda_max]``, so a Ritz value ``<= 0`` (``< 0`` for
    sqrt) proves that ``A`` is not positive definite (semidefinite): that is an error. The converse
    cannot be proved by SLQ: it sees the spectrum only through its Ritz values, each within its
    residual ``rho = |beta_m s_m|`` of an eigenvalue. When a Ritz interval ``[theta - rho, theta + rho]``
    reaches ``0``, a non-positive eigenvalue is not excluded at the run's resolution: a warning with
    the numbers (more steps resolve the lower end). Clear of ``0``, no eigenvalue ``<= 0`` is in sight.
    For sqrt a zero eigenvalue is fine: the tests allow the Ritz values' rounding, ``rel max |theta|``.
    """
    used = dens.weights > 0
    need = "positive semidefinite" if name == "sqrt" else "positive definite"
    theta = np.where(used, dens.nodes, np.inf)
    r, i = np.unravel_index(int(np.argmin(theta)), theta.shape)
    low = float(theta[r, i])
    slack = rel * float(np.max(np.abs(dens.nodes[used]))) if name == "sqrt" else 0.0
    if low < -slack or (low == 0 and name != "sqrt"):
        raise ValueError(f"trace: f={name!r} needs a {need} operator, but a Ritz value is {low:.6g} "
                         f"{'<' if name == 'sqrt' else '<='} 0 (probe {r}): lambda_min <= {low:.6g}")
    if dens.residuals.shape != dens.nodes.shape:
        return
    reach = np.where(used, dens.nodes - dens.residuals, np.inf)
    r, i = np.unravel_index(int(np.argmin(reach)), reach.shape)
    if reach[r, i] <= -slack:
        warnings.warn(f"trace: f={name!r} needs a {need} operator, and SLQ cannot exclude an eigenvalue <= 0: "
                      f"the Ritz value {dens.nodes[r, i]:.6g} (probe {r}) is within its residual "
                      f"{dens.residuals[r, i]:.3g} of 0; f is applied as if A were {need} (more steps resolve "
                      "the lower end of the spectrum)", RuntimeWarning, stacklevel=3)


def logdet(A: Any, **kwargs: Any) -> Estimate:
    """``log det A`` of a symmetric positive definite operator: ``trace(A, method="slq", f="log", ...)``."""
    return trace(A, method="slq", f="log", **kwargs)
