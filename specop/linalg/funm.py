"""``f(A) v`` for a symmetric operator by the Lanczos method (Lanczos-FA), and ``expm_multiply``.

After ``m`` Lanczos steps from ``q_1 = v / ||v||`` (``A Q_m = Q_m T_m + beta_m q_{m+1} e_m^T``),
``f(A) v ~ y_m = ||v|| Q_m f(T_m) e_1`` with ``f(T_m) = S f(Theta) S^T`` from the small
tridiagonal eigendecomposition (Gallopoulos & Saad, "Efficient solution of parabolic
equations by Krylov approximation methods", SIAM J. Sci. Stat. Comput. 13, 1992; Saad,
"Analysis of some Krylov subspace approximations to the matrix exponential operator",
SIAM J. Numer. Anal. 29, 1992). ``y_m`` is exact for polynomials of degree ``< m`` and, even
with the loss of orthogonality of finite precision, its error is within a small factor of
the best uniform polynomial approximation of ``f`` of degree about ``m`` on the spectrum
(Musco, Musco & Sidford, "Stability of the Lanczos method for matrix function
approximation", SODA 2018), so ``m`` grows like ``||A||`` for ``exp`` and like
``sqrt(cond A)`` for ``inv``, ``invsqrt``, ``sqrt`` and ``log``.

Error estimate (a-posteriori, not a bound): ``||y_m - y_{m-d}||`` with ``d = max(1, m // 8)``,
computed from ``T_m`` alone (the ``y_j`` share the basis). With ``steps=None`` the run
doubles ``m`` from 16 until the estimate is ``<= tol ||y_m||`` or ``maxsteps`` is reached;
every run is counted in ``matvecs`` (at most about twice the last run). A Lanczos breakdown
means ``v`` lies in an invariant subspace of ``A``: ``y_m`` is then exact.

``f`` in ``{"sqrt", "invsqrt", "log", "inv"}`` needs a positive definite ``A``: a Ritz value
``<= 0`` (the Ritz values lie in ``[lambda_min, lambda_max]``) raises ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specop import backends
from specop._errors import ConvergenceWarning
from specop.linalg._common import REORTH, check_choice, check_positive_int, prepare
from specop.linalg._common import recurrence_dtype as resolve_rdtype
from specop.linalg._solver_common import check_real
from specop.linalg.lanczos import lanczos, tridiagonal_eigh

__all__ = ["funm_multiply", "expm_multiply", "FunmResult", "MATRIX_FUNCTIONS"]

#: Named functions of :func:`funm_multiply`, as functions of the (host, float64) Ritz values.
MATRIX_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "sqrt": np.sqrt,
    "invsqrt": lambda t: 1.0 / np.sqrt(t),
    "log": np.log,
    "inv": lambda t: 1.0 / t,
}
_POSITIVE = ("sqrt", "invsqrt", "log", "inv")
FIRST_STEPS = 16


@dataclass(frozen=True)
class FunmResult:
    """Outcome of :func:`funm_multiply`.

    Attributes
    ----------
    y : array
        ``f(A) v`` on the operator's backend and device, shaped like ``v``.
    error_estimate : float
        ``||y_m - y_{m-d}||`` (largest over the columns of a block; see the module docstring).
    matvecs : int
        Products with ``A`` (all runs of the step doubling included).
    converged : bool
        Whether the estimate met ``tol ||y||`` (or the Krylov space became invariant).
    steps : int
        Lanczos steps ``m`` of the final run (largest over the columns).
    ritz_range : tuple of float
        Smallest and largest Ritz value seen (inside ``[lambda_min, lambda_max]``).
    """

    y: Any = field(repr=False)
    error_estimate: float
    matvecs: int
    converged: bool
    steps: int
    ritz_range: tuple[float, float]


def _coefficients(alpha: np.ndarray, beta: np.ndarray, fn: Callable[[np.ndarray], np.ndarray],
                  name: str | None, what: str) -> tuple[np.ndarray, float, float]:
    """``f(T_j) e_1`` for the leading ``j x j`` block of ``T``; also its smallest and largest Ritz value."""
    theta, S = tridiagonal_eigh(alpha, beta[: alpha.size - 1])
    if name in _POSITIVE and theta.min() <= 0:
        raise ValueError(f"{what}: f={name!r} needs a positive definite operator, but a Ritz value is "
                         f"{theta.min():.6g} <= 0 (Ritz values in [{theta.min():.6g}, {theta.max():.6g}])")
    fv = np.asarray(fn(theta), dtype=np.float64)
    if fv.shape != theta.shape:
        raise ValueError(f"f: expected a function returning one value per eigenvalue ({theta.shape}), "
                         f"got shape {fv.shape}")
    return S @ (fv * S[0, :]), float(theta.min()), float(theta.max())


def _one_column(A: Any, v: Any, fn: Any, name: str | None, steps: int | None, tol: float, maxsteps: int,
                reorth: str, rdt: Any, what: str, others: tuple = ()) -> tuple[Any, float, int, bool, int,
                                                                               tuple[float, float], list[Any]]:
    """Lanczos-FA of one vector; ``others``: more functions evaluated on the final ``T`` (time grids)."""
    xp = A.xp
    n = A.shape[0]
    vnorm = float(backends.to_numpy(xp.sqrt(xp.sum(v * v))))
    if not np.isfinite(vnorm):
        raise ValueError(f"v: expected finite values, got norm {vnorm}")
    if vnorm == 0.0:
        return xp.zeros_like(v), 0.0, 0, True, 0, (0.0, 0.0), [xp.zeros_like(v) for _ in others]
    m = min(n, steps if steps is not None else min(FIRST_STEPS, maxsteps))
    matvecs = 0
    while True:
        lz = lanczos(A, v, steps=m, reorth=reorth, return_basis=True)
        matvecs += lz.matvecs
        k = lz.steps_done
        c, lo, hi = _coefficients(lz.alpha, lz.beta, fn, name, what)
        c = vnorm * c
        d = max(1, k // 8)
        if lz.breakdown or k == n:
            err = 0.0
        elif k > d:
            prev, _, _ = _coefficients(lz.alpha[: k - d], lz.beta[: k - d], fn, name, what)
            err = float(np.linalg.norm(c - np.concatenate([vnorm * prev, np.zeros(d)])))
        else:
            err = float(np.linalg.norm(c))
        ynorm = float(np.linalg.norm(c))
        ok = lz.breakdown or k == n or err <= tol * ynorm
        if steps is not None or ok or m >= min(maxsteps, n):
            break
        m = min(2 * m, maxsteps, n)
    y = lz.basis @ backends.from_numpy(c, xp, A.device, rdt)
    more = [lz.basis @ backends.from_numpy(vnorm * _coefficients(lz.alpha, lz.beta, g, None, what)[0], xp,
                                           A.device, rdt) for g in others]
    return y, err, matvecs, bool(ok), k, (lo, hi), more


def funm_multiply(A: Any, v: Any, f: str | Callable[[np.ndarray], np.ndarray], *, steps: int | None = None,
                  tol: float = 1e-8, maxsteps: int | None = None, reorth: str = "full",
                  recurrence_dtype: str | None = "float64") -> FunmResult:
    """``f(A) v`` for a symmetric operator ``A`` by Lanczos (see the module docstring).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    v : array, shape (n,) or (n, k)
        Vector(s) on the operator's backend; the columns of a block are done one by one.
    f : {"exp", "sqrt", "invsqrt", "log", "inv"} or callable
        The function; a callable maps a float64 numpy array of eigenvalues to values.
    steps : int, optional
        Fixed number of Lanczos steps; default: doubled from 16 until the error estimate
        meets ``tol``.
    tol : float
        Relative tolerance of the error estimate (``steps=None``).
    maxsteps : int, optional
        Cap of the step doubling (default ``min(n, 1024)``).
    reorth : {"full", "selective", "none"}
        Lanczos reorthogonalization (the basis is kept in any case).
    recurrence_dtype : {"float64", "float32"} or None
        As in :func:`~specop.lanczos`.

    Returns
    -------
    FunmResult
        A run that misses ``tol`` warns (:class:`~specop.ConvergenceWarning`) with numbers.

    Raises
    ------
    ValueError
        For ``sqrt``/``invsqrt``/``log``/``inv`` when a Ritz value is ``<= 0`` (``A`` is not
        positive definite), and for bad arguments.
    """
    A, n = prepare(A, "funm_multiply")
    name = f if isinstance(f, str) else None
    if name is not None:
        fn = MATRIX_FUNCTIONS.get(name)
        if fn is None:
            raise ValueError(f"f: expected one of {tuple(MATRIX_FUNCTIONS)} or a callable, got {f!r}")
    elif callable(f):
        fn = f
    else:
        raise TypeError(f"f: expected a name or a callable, got {type(f).__name__}")
    steps = None if steps is None else check_positive_int(steps, "steps")
    tol = check_real(tol, "tol")
    maxsteps = min(n, 1024) if maxsteps is None else check_positive_int(maxsteps, "maxsteps")
    check_choice(reorth, "reorth", REORTH)
    rdt = resolve_rdtype(A, recurrence_dtype)
    if not backends.is_array(v) or v.ndim not in (1, 2):
        raise ValueError(f"v: expected an array of shape ({n},) or ({n}, k), got "
                         f"{tuple(v.shape) if backends.is_array(v) else type(v).__name__}")
    V = A._check_input(v, v.ndim, n, "v")
    out_dtype = A.xp.result_type(A.dtype, v.dtype)
    cols = [V] if V.ndim == 1 else [V[:, j] for j in range(V.shape[1])]
    parts, errs, mv, conv, used, lo, hi = [], [], 0, True, 0, np.inf, -np.inf
    with backends.host_blas_single_thread(A.xp):
        for col in cols:
            y, err, m, ok, k, (a, b), _ = _one_column(A, backends.astype(col, rdt, A.xp), fn, name, steps, tol,
                                                      maxsteps, reorth, rdt, "funm_multiply")
            parts.append(backends.astype(y, out_dtype, A.xp))
            errs.append(err)
            mv, conv, used, lo, hi = mv + m, conv and ok, max(used, k), min(lo, a), max(hi, b)
    y = parts[0] if V.ndim == 1 else A.xp.stack(parts, axis=1)
    err = float(max(errs))
    if not conv and steps is None:
        warnings.warn(f"funm_multiply: f={name or 'callable'} not converged after {used} Lanczos steps "
                      f"(maxsteps {maxsteps}): error estimate {err:.2e} > tol {tol:g} x ||y||",
                      ConvergenceWarning, stacklevel=2)
    return FunmResult(y=y, error_estimate=err, matvecs=mv, converged=conv, steps=used,
                      ritz_range=(float(lo), float(hi)))


def expm_multiply(A: Any, B: Any, start: float | None = None, stop: float | None = None, num: int | None = None,
                  endpoint: bool | None = None, traceA: float | None = None, *, t: float = 1.0,
                  tol: float = 1e-10) -> Any:
    """``exp(t A) B`` for a symmetric ``A``, with scipy's signature (arrays of ``A``'s backend).

    Parameters
    ----------
    A : LinearOperator or array-like
        Square **symmetric** operator (Lanczos; scipy's accepts any square ``A``).
    B : array, shape (n,) or (n, k)
    start, stop, num, endpoint
        As in scipy: with ``start``/``stop`` given, the result at the ``num`` times
        ``numpy.linspace(start, stop, num, endpoint)`` (defaults ``num=50``,
        ``endpoint=True``), stacked along a new first axis; ``t`` is then ignored.
    traceA : float, optional
        Accepted for compatibility and ignored (scipy uses it to scale ``A``).
    t : float
        Time of the single-time call (``exp(t A) B``).
    tol : float
        Relative tolerance of :func:`funm_multiply`'s error estimate.

    Returns
    -------
    array
        ``exp(t A) B`` (shape of ``B``), or shape ``(num,) + B.shape`` on a time grid.
    """
    del traceA
    if start is None and stop is None:
        times = np.array([check_real(t, "t", low=-np.inf)])
        grid = False
    else:
        if start is None or stop is None:
            raise ValueError(f"start, stop: expected both or neither, got start={start!r}, stop={stop!r}")
        num = 50 if num is None else check_positive_int(num, "num")
        times = np.linspace(check_real(start, "start", low=-np.inf), check_real(stop, "stop", low=-np.inf), num,
                            endpoint=True if endpoint is None else bool(endpoint))
        grid = True
    A, n = prepare(A, "expm_multiply")
    xp = A.xp
    if not grid:
        return funm_multiply(A, B, lambda th: np.exp(times[0] * th), tol=tol).y
    # one Lanczos run per column serves every time: its steps are set by the largest |t|
    far = float(times[np.argmax(np.abs(times))])
    fns = tuple((lambda th, s=float(s): np.exp(s * th)) for s in times)
    if not backends.is_array(B) or B.ndim not in (1, 2):
        raise ValueError(f"B: expected an array of shape ({n},) or ({n}, k), got "
                         f"{tuple(B.shape) if backends.is_array(B) else type(B).__name__}")
    V = A._check_input(B, B.ndim, n, "B")
    rdt, out_dtype = resolve_rdtype(A, "float64"), xp.result_type(A.dtype, B.dtype)
    cols = [V] if V.ndim == 1 else [V[:, j] for j in range(V.shape[1])]
    per_time: list[list[Any]] = [[] for _ in times]
    with backends.host_blas_single_thread(xp):
        for col in cols:
            *_, more = _one_column(A, backends.astype(col, rdt, xp), lambda th: np.exp(far * th), None, None, tol,
                                   min(n, 1024), "full", rdt, "expm_multiply", fns)
            for i, y in enumerate(more):
                per_time[i].append(backends.astype(y, out_dtype, xp))
    outs = [p[0] if V.ndim == 1 else xp.stack(p, axis=1) for p in per_time]
    return xp.stack(outs, axis=0)
