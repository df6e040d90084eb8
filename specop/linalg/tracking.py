"""Tracking the top eigenpairs of an operator that changes, e.g. a Hessian along training.

:class:`Tracker` re-evaluates the operator at every :meth:`Tracker.update` and runs
:func:`specop.eigsh` warm-started from its previous result (``v0=previous``, see
``specop.linalg._warm``), recording the eigenvalues, products and convergence of every
update. The first update is a cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from specop.linalg.thick_restart import EigshResult, eigsh
from specop.operators.base import LinearOperator

__all__ = ["Tracker", "TrackRecord"]


@dataclass(frozen=True)
class TrackRecord:
    """One :meth:`Tracker.update`: its eigenvalues (ascending), products, and flags."""

    step: int
    eigenvalues: np.ndarray
    matvecs: int
    converged: bool
    verified: bool
    warm: bool


class Tracker:
    """Top-``k`` eigenpairs of a changing operator, each update warm-started from the last.

    Parameters
    ----------
    operator : LinearOperator or callable
        The operator, re-evaluated at every update: a callable (no arguments) is called to build
        the current operator (e.g. ``lambda: HessianOperator(loss_fn, params, data)`` in JAX,
        whose operators hold the parameters they were built with); an operator is used as is,
        after its ``refresh()`` if it has one (torch curvature operators read the model's current
        parameters at every product; ``refresh()`` drops what they cached from the old ones).
    k : int
        Number of eigenpairs.
    which, tol
        As in :func:`specop.eigsh`.
    **eigsh_kwargs
        Further arguments of :func:`specop.eigsh` (``ncv``, ``seed``, ``verify``, ...), except
        ``v0``, which the tracker sets.

    Attributes
    ----------
    history : list of TrackRecord
        One record per update.
    last : EigshResult or None
        The latest result.

    Examples
    --------
    >>> import numpy as np, specop
    >>> A = np.diag(np.arange(1.0, 51.0))
    >>> tr = specop.Tracker(lambda: specop.aslinearoperator(A), k=2, seed=0)
    >>> w = tr.update().eigenvalues
    >>> A[0, 0] = 60.0
    >>> tr.update().eigenvalues.round(6).tolist(), len(tr.history)
    ([50.0, 60.0], 2)
    """

    def __init__(self, operator: LinearOperator | Callable[[], Any], k: int = 1, *, which: str = "LA",
                 tol: float = 1e-8, **eigsh_kwargs: Any) -> None:
        if not (isinstance(operator, LinearOperator) or callable(operator)):
            raise TypeError(f"Tracker: operator: expected a LinearOperator or a callable returning one, got "
                            f"{type(operator).__name__}")
        if "v0" in eigsh_kwargs:
            raise TypeError("Tracker: v0: the tracker sets v0 (the previous result); pass it to eigsh directly")
        self.operator, self.k, self.which, self.tol = operator, k, which, tol
        self.eigsh_kwargs = eigsh_kwargs
        self.history: list[TrackRecord] = []
        self.last: EigshResult | None = None

    def current(self) -> Any:
        """The operator now: the factory's result, or the operator after its ``refresh()``."""
        if isinstance(self.operator, LinearOperator):
            refresh = getattr(self.operator, "refresh", None)
            if callable(refresh):
                refresh()
            return self.operator
        return self.operator()

    def update(self) -> EigshResult:
        """Re-evaluate the operator and compute its top-``k`` pairs warm-started from the last result."""
        res = eigsh(self.current(), k=self.k, which=self.which, tol=self.tol, v0=self.last, **self.eigsh_kwargs)
        self.history.append(TrackRecord(len(self.history), np.array(res.eigenvalues), res.matvecs, res.converged,
                                        res.verified, self.last is not None))
        self.last = res
        return res

    @property
    def eigenvalues(self) -> np.ndarray:
        """``(updates, k)`` host array of the eigenvalues of every update (ascending in each row)."""
        return np.array([r.eigenvalues for r in self.history])

    @property
    def matvecs(self) -> int:
        """Products spent over all updates."""
        return sum(r.matvecs for r in self.history)
