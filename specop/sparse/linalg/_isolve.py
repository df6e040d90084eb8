"""scipy's iterative solvers ``cg``, ``minres``, ``gmres``, ``lsqr``, ``lsmr`` on specop's, for every backend.

Signatures, defaults and return tuples are scipy's (``scipy.sparse.linalg`` 1.17); ``b`` and
``x0`` of shape ``(n,)`` or ``(n, 1)`` give a solution of shape ``(n,)`` (scipy's
``make_system``); anything else raises scipy's ``ValueError``. The work is done by
:func:`specop.linalg.cg` (Hestenes & Stiefel 1952), :func:`~specop.linalg.minres` (Paige &
Saunders 1975), :func:`~specop.linalg.gmres` (Saad & Schultz 1986),
:func:`~specop.linalg.lsqr` (Paige & Saunders 1982) and :func:`~specop.linalg.lsmr`
(Fong & Saunders 2011). As in scipy, a solve that misses its tolerance says so through
``info`` (``> 0``: the iterations run; ``< 0``: a breakdown), not through a warning.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

from specop import backends
from specop.linalg import cg as _cg
from specop.linalg import gmres as _gmres
from specop.linalg import lsmr as _lsmr
from specop.linalg import lsqr as _lsqr
from specop.linalg import minres as _minres
from specop.linalg._common import ensure_symmetric
from specop.sparse.linalg._convert import as_operator, quiet, vector

__all__ = ["cg", "minres", "gmres", "lsqr", "lsmr"]


def _system(A: Any, b: Any, x0: Any, what: str, M: Any = None) -> tuple[Any, Any, Any]:
    """The operator, ``b`` and ``x0`` as vectors; ``x0='Mb'`` is scipy's ``M @ b`` (``b`` without ``M``)."""
    op = as_operator(A, what)
    b = vector(op, b, "b", op.shape[0], op.shape)
    if isinstance(x0, str):
        if x0 != "Mb":
            raise ValueError(f"x0: expected an array, None or 'Mb', got {x0!r}")
        x0 = b if M is None else as_operator(M, what).matvec(b)
    elif x0 is not None:
        x0 = vector(op, x0, "x0", op.shape[1], op.shape)
    return op, b, x0


def _at_once(op: Any, b: Any, x0: Any, rtol: Any, atol: Any) -> Any:
    """scipy's answers that need no iteration (None otherwise), with ``info = 0``.

    ``b = 0``: ``x = 0`` whatever ``x0``; ``rtol`` or ``atol`` infinite: every residual meets the
    tolerance, so ``x0`` (zero without one) is returned as it is.
    """
    xp = op.xp
    zero = xp.zeros_like(backends.astype(b, xp.result_type(op.dtype, b.dtype), xp))
    if bool(xp.all(b == 0)):
        return zero
    if any(isinstance(t, numbers.Real) and t == math.inf for t in (rtol, atol)):
        return zero if x0 is None else backends.astype(x0, zero.dtype, xp)
    return None


def _column(callback: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """specop's block callback (``(n, 1)`` iterates) as scipy's vector callback."""
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    return lambda X: callback(X[:, 0])


def cg(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0, maxiter: int | None = None,
       M: Any = None, callback: Callable[[Any], Any] | None = None) -> tuple[Any, int]:
    """:func:`scipy.sparse.linalg.cg`: ``(x, info)``; info 0 converged, ``> 0`` iterations, ``< 0`` breakdown.

    ``info = -1`` when ``p^T A p <= 0`` (``A`` or ``M`` is not positive definite): scipy would go on
    with a meaningless iteration. ``callback(xk)`` gets the iterate, shape ``(n,)``.
    """
    op, b, x0 = _system(A, b, x0, "cg", M)
    if (x := _at_once(op, b, x0, rtol, atol)) is not None:
        return x, 0
    with quiet():
        res = _cg(op, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=_column(callback))
    return res.x, res.info


def minres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, shift: float = 0.0, maxiter: int | None = None,
           M: Any = None, callback: Callable[[Any], Any] | None = None, show: bool = False,
           check: bool = False) -> tuple[Any, int]:
    """:func:`scipy.sparse.linalg.minres`: ``(x, info)`` for ``(A - shift I) x = b``.

    Converged means ``||b - (A - shift I) x|| <= rtol ||b||`` for the true residual (scipy stops
    on its looser estimate ``||r|| <= rtol (||A|| ||x|| + ||b||)``). ``check=True`` tests ``A``
    (and ``M``) for symmetry first (scipy's ``ValueError('non-symmetric matrix')``); ``show=True``
    prints a summary of the solve.
    """
    op, b, x0 = _system(A, b, x0, "minres", M)
    if check:
        for name, X in (("A", op), ("M", None if M is None else as_operator(M, "minres"))):
            if X is None:
                continue
            try:
                ensure_symmetric(X, "minres", True)
            except ValueError as exc:
                raise ValueError(f"non-symmetric matrix{'' if name == 'A' else ' M'}") from exc
    if (x := _at_once(op, b, x0, rtol, 0.0)) is not None:
        return x, 0
    with quiet():
        res = _minres(op, b, x0=x0, shift=shift, rtol=rtol, maxiter=maxiter, M=M, callback=_column(callback))
    if show:
        print(f"minres: solution of (A - shift I) x = b, n = {op.shape[0]}, shift = {float(shift):g}, "
              f"rtol = {rtol:.1e}: info = {res.info}, {res.iterations} iterations, {res.matvecs} products, "
              f"true ||r|| = {float(res.residual_norms):.3e}")
    return res.x, res.info


def gmres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0, restart: int | None = None,
          maxiter: int | None = None, M: Any = None, callback: Callable[[Any], Any] | None = None,
          callback_type: str | None = None) -> tuple[Any, int]:
    """:func:`scipy.sparse.linalg.gmres`: ``(x, info)``, scipy's ``restart``/``maxiter``/``callback_type``.

    A ``callback`` without ``callback_type`` gets scipy's ``DeprecationWarning`` and the "legacy" calls.
    """
    if callback is not None and callback_type is None:
        warnings.warn("specop.sparse.linalg.gmres called without specifying `callback_type`. The default value "
                      "will be changed in a future release (as in scipy). For compatibility, specify a value for "
                      "`callback_type` explicitly, e.g., ``gmres(..., callback_type='pr_norm')``, or to retain the "
                      "old behavior ``gmres(..., callback_type='legacy')``", DeprecationWarning, stacklevel=2)
    if callback_type is not None and callback_type not in ("x", "pr_norm", "legacy"):
        raise ValueError(f"Unknown callback_type: {callback_type!r}")
    op, b, x0 = _system(A, b, x0, "gmres", M)
    if (x := _at_once(op, b, x0, rtol, atol)) is not None:
        return x, 0
    with quiet():
        res = _gmres(op, b, x0, rtol=rtol, atol=atol, restart=restart, maxiter=maxiter, M=M, callback=callback,
                     callback_type=callback_type)
    return res.x, res.info


def lsqr(A: Any, b: Any, damp: float = 0.0, atol: float = 1e-6, btol: float = 1e-6, conlim: float = 1e8,
         iter_lim: int | None = None, show: bool = False, calc_var: bool = False, x0: Any = None) -> tuple:
    """:func:`scipy.sparse.linalg.lsqr`: ``x, istop, itn, r1norm, r2norm, anorm, acond, arnorm, xnorm, var``."""
    op, b, x0 = _system(A, b, x0, "lsqr")
    with quiet():
        res = _lsqr(op, b, damp, atol, btol, conlim, iter_lim, show, calc_var, x0)
    return tuple(res)


def lsmr(A: Any, b: Any, damp: float = 0.0, atol: float = 1e-6, btol: float = 1e-6, conlim: float = 1e8,
         maxiter: int | None = None, show: bool = False, x0: Any = None) -> tuple:
    """:func:`scipy.sparse.linalg.lsmr`: ``x, istop, itn, normr, normar, norma, conda, normx``.

    ``normr`` and ``normar`` are the *true* ``||[b; 0] - [A; damp I] x||`` and
    ``||A^T r - damp^2 x||`` of the returned ``x`` (scipy's are the recurrence's estimates);
    ``show=True`` prints a summary.
    """
    op, b, x0 = _system(A, b, x0, "lsmr")
    with quiet():
        res = _lsmr(op, b, damp=damp, atol=atol, btol=btol, conlim=conlim, maxiter=maxiter, x0=x0)
    out = (res.x, int(res.istop), int(res.iterations), float(res.residual_norms), float(res.normar),
           float(res.norma), float(res.conda), float(res.normx))
    if show:
        print(f"lsmr: least-squares solution of A x = b, A of shape {op.shape}, damp = {float(damp):g}: "
              f"istop = {out[1]}, itn = {out[2]}, normr = {out[3]:.3e}, normar = {out[4]:.3e}, "
              f"norma = {out[5]:.3e}, conda = {out[6]:.3e}, normx = {out[7]:.3e}")
    return out

