"""Acceptance, locking and restart rules of thick-restart eigsh: when a Ritz pair is converged and may
be locked, and how many Ritz vectors a restart keeps.

A pair ``(theta, y)`` is converged when its residual ``rho = ||A y - theta y||``
satisfies ``rho <= max(tol |theta|, 100 eps ||A||)``, with ``||A||`` estimated from below
by the largest Ritz value magnitude seen. ``rho`` is the true residual up to rounding:
``|beta_m s_m|`` (the Krylov residual) combined with the part along the locked vectors,
``L^T A y``, which the reorthogonalization coefficients give for free. A locked pair's own
residual stays in every later residual, so early locking (before all wanted pairs have
converged) is limited to what the strictest wanted tolerance can absorb (see
``_affordable``); but no acceptance floor is raised by it: every reported pair meets
``tol`` with its true residual, or the result says ``converged=False``. A result with
fewer than ``k`` pairs (an invariant Krylov space that holds fewer) is never converged:
the run continues from a fresh vector orthogonal to the space found.

Locking itself follows Wu & Simon (SIAM J. Matrix Anal. Appl. 22, 2000): a converged
pair leaves the active basis and later vectors are orthogonalized against it.

Restarts keep ``KEEP`` of the free basis room beyond the wanted pairs, at most half of it in
a small basis (``ncv = 2k + 1``), so that each restart adds at least half the free room (as
ARPACK's implicit restart adds ``np / 2``).
"""

from __future__ import annotations

import math

import numpy as np

from specop.linalg._common import host_hypot
from specop.linalg._which import settled, wanted

__all__ = ["Acceptance", "extra_kept", "skipped_tests", "KEEP", "SMALL_ROOM"]

#: Fraction of the free basis room kept at a restart beyond the wanted pairs (Wu & Simon keep about half).
KEEP = 0.6
#: Below this many free places a restart keeps at most half of them (see ``extra_kept``).
SMALL_ROOM = 12
#: Residual factor per skipped convergence test, and the most tests skipped in a row (see ``skipped_tests``).
FAR_STEP = 10.0
MAX_SKIPPED = 3


def skipped_tests(far: float) -> int:
    """Lanczos steps whose convergence test (the small eigh) may be skipped when the nearest unconverged
    wanted pair has a residual ``far`` times its tolerance: one per factor ``FAR_STEP`` (at most
    ``MAX_SKIPPED``). A residual rarely falls by more than ``FAR_STEP`` in one step; when it does, the
    convergence is seen a step or two late (a product or two more), never claimed early."""
    if not far > FAR_STEP:
        return 0
    return min(MAX_SKIPPED, int(math.log(far) / math.log(FAR_STEP)))


def extra_kept(free: int) -> int:
    """Ritz vectors kept at a restart beyond the wanted ones, out of ``free`` places in the basis.

    ``KEEP`` of them (measured best on the benchmark spectra with the default basis), but at
    most half when the room is small (``free < SMALL_ROOM``, e.g. ``ncv = 2k + 1``): every restart
    then adds at least half the free room as new Krylov vectors, like ARPACK's ``np / 2``, instead
    of 2-3 steps per restart that exhaust ``maxiter``.
    """
    return free // 2 if free < SMALL_ROOM else int(free * KEEP)


class Acceptance:
    """The convergence tests of a thick-restart run (a mixin of its state, read-only but for ``ends_settled``).

    ``tnorm`` and ``anorm`` are running estimates of ``||T||`` and ``||A||`` (from below), ``p`` the
    number of locked pairs with values ``locked_vals`` and residuals ``locked_res``.
    """

    n: int
    k: int
    ncv: int
    p: int
    which: str
    verify: bool
    eps: float
    tol: float
    tnorm: float
    anorm: float
    locked_vals: list[float]
    locked_res: list[float]
    ends_settled: tuple[bool, bool]
    far: float = 1.0  # set by _status: the nearest unconverged wanted pair's residual / its tolerance

    def _invariance(self) -> float:
        """``beta`` below this ends the Krylov space: an invariant subspace to working precision.

        Rounding leaves ``beta`` of about ``sqrt(n) eps ||A||``; a larger threshold would
        end the space early and report residuals it does not have (a noise-level ``beta``
        that passes it only adds a fresh direction, harmless under full reorthogonalization).
        """
        return 10 * math.sqrt(self.n) * self.eps * self.tnorm

    def _floor(self, invariant: bool = False) -> float:
        """Smallest residual that can be resolved: rounding (``100 eps ||A||``), and in an invariant
        subspace its ``beta`` (rounding too). Nothing else: every accepted pair meets ``tol`` with its
        true residual, the part along the locked vectors included (see ``_affordable``)."""
        return max(100 * self.eps * self.anorm, self._invariance() if invariant else 0.0)

    def _locked_residual(self) -> float:
        """``||R_L||_F``: the locked pairs' residuals together."""
        return host_hypot(self.locked_res)

    def _converged(self, theta: np.ndarray, rho: np.ndarray, invariant: bool = False) -> np.ndarray:
        return rho <= np.maximum(self.tol * np.abs(theta), self._floor(invariant))

    def _affordable(self, conv: np.ndarray, rho: np.ndarray, want_vals: np.ndarray) -> np.ndarray:
        """The converged pairs that may be locked while other wanted pairs have not converged.

        A locked pair's residual ``r_u`` stays in every later residual: a later Ritz
        vector ``y`` (orthogonal to the locked ones) has ``||A y - theta y||^2 =
        rho_active^2 + ||L^T A y||^2`` with ``L^T A y = R_L^T y`` (tracked in ``C`` and
        included in ``rho``). So early locking is limited to a total locked residual of
        half the strictest wanted tolerance, the smallest residual first; the other
        converged pairs stay active, keep improving, and are locked when all have converged.
        """
        if not conv.size:
            return conv
        cap = max(0.5 * self.tol * float(np.abs(want_vals).min()), 100 * self.eps * self.anorm)
        order = conv[np.argsort(rho[conv], kind="stable")]
        lo, hi = 1e-150, 1e150  # cap^2 is a normal number: the plain sums of squares are exact
        if lo < cap < hi:
            budget = cap * cap - self._locked_residual() ** 2
            return order[np.cumsum(np.square(rho[order])) <= budget]
        if cap == 0.0:  # the zero operator: only exact pairs
            return order[rho[order] == 0.0]
        # in units of cap, so that the squares neither overflow nor underflow at any scale of A
        budget = 1.0 - (self._locked_residual() / cap) ** 2
        return order[np.cumsum(np.square(rho[order] / cap)) <= budget]

    def _status(self, theta: np.ndarray, rho: np.ndarray, verifying: bool,
                invariant: bool) -> tuple[np.ndarray, bool, bool]:
        """Active indices to lock now, whether the run is finished, whether every wanted pair converged."""
        self.ends_settled = (True, True)
        locked = np.asarray(self.locked_vals)
        allv = np.concatenate([locked, theta])
        want = wanted(allv, self.k, self.which)
        act = want[want >= locked.size] - locked.size
        ok = self._converged(theta[act], rho[act], invariant)
        conv = act[ok]
        if not ok.all():  # how far the nearest unconverged wanted pair is from its tolerance (see skipped_tests)
            rest = act[~ok]
            self.far = float(np.min(rho[rest] / np.maximum(self.tol * np.abs(theta[rest]), self._floor(invariant))))
        else:
            self.far = 1.0
        if conv.size < act.size or allv.size < self.k:  # fewer than k pairs (an invariant space) is never done
            return self._affordable(conv, rho, allv[want]), False, False
        if not (self.verify and verifying):
            return conv, not self.verify, True
        if conv.size:  # a missed copy: lock it and check again with a fresh vector
            return conv, False, True
        if theta.size < min(5, self.ncv, self.n - self.p) and not invariant:  # too few steps to judge
            return conv, False, True
        final = allv[want]
        margin = max(self.tol * np.abs(final).max(), self._floor(invariant))
        self.ends_settled = settled(theta, rho, final, self.which, margin)
        return conv, all(self.ends_settled), True
