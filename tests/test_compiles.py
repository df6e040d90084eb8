"""Compiled kernels: a longer run on the same operator shape compiles nothing more (JAX).

Where the backend compiles a program per array shape (JAX), every program of a solver's
iteration must depend on the operator's shape only, never on the iteration (a basis sliced to
the step, a restart's length). A short run compiles them; a longer run on a fresh operator of
the same shape and dtype must then compile none. Elsewhere compile counts are zero.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import specop
from specop import backends

N = 23  # a size the other tests do not use: the short run is the first at this shape

SOLVERS = {
    "cg": lambda A, b, it: specop.linalg.cg(A, b, rtol=1e-300, maxiter=it),
    "gmres": lambda A, b, it: specop.linalg.gmres(A, b, rtol=1e-300, restart=N, maxiter=it,
                                                  callback=lambda r: None, callback_type="legacy"),
    "lsmr": lambda A, b, it: specop.linalg.lsmr(A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=it),
    "lsqr": lambda A, b, it: specop.linalg.lsqr(A, b, atol=0.0, btol=0.0, conlim=0.0, iter_lim=it),
}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_compiles_do_not_grow_with_the_iteration_count(backend, solver):
    rng = np.random.default_rng(7)
    G = rng.standard_normal((N, N))
    S = G @ G.T / N + np.eye(N)  # SPD with n distinct eigenvalues: no early breakdown in 12 steps
    run = SOLVERS[solver]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", specop.ConvergenceWarning)
        short = run(specop.aslinearoperator(backend.asarray(S)), backend.asarray(rng.standard_normal(N)), 2)
        before = backends.compile_count()
        long = run(specop.aslinearoperator(backend.asarray(S + 0.5 * np.eye(N))),
                   backend.asarray(rng.standard_normal(N)), 12)
        grown = backends.compile_count() - before
    steps = [getattr(r, name) for r in (short, long) for name in ("iterations", "itn") if hasattr(r, name)]
    assert steps == [2, 12], f"{solver}: expected runs of 2 and 12 iterations, got {steps}"
    assert grown == 0, f"{solver}: 12 iterations compiled {grown} programs more than 2 on the same shape"


def test_eigsh_compiles_nothing_more_after_the_first_restarts(backend):
    """Thick-restart eigsh: a run of many restarts and locks, on the shape of a run of 2 restarts,
    compiles no program more (the locked rows and the restarts change no shape)."""
    n = 29  # a size the other tests do not use
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = (Q * np.linspace(0.0, 1.0, n)) @ Q.T  # evenly spaced: the top pairs converge and lock one by one
    S = (S + S.T) / 2

    def run(M, maxiter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", specop.ConvergenceWarning)
            return specop.eigsh(specop.aslinearoperator(backend.asarray(M)), k=3, ncv=6, tol=1e-10,
                                maxiter=maxiter, seed=0, verify=False)

    short = run(S, 2)
    before = backends.compile_count()
    long = run(S + 0.5 * np.eye(n), 100)
    grown = backends.compile_count() - before
    assert short.restarts == 3 and not short.converged, (short.restarts, short.converged)
    assert long.restarts >= 10 and long.converged, (long.restarts, long.converged)
    assert grown == 0, f"eigsh: {long.restarts} restarts compiled {grown} programs more than 2 on the same shape"


DENSITIES = {
    "slq": lambda A, probes, steps: specop.spectral_density(A, num_probes=probes, steps=steps, seed=0),
    "slq block": lambda A, probes, steps: specop.spectral_density(A, num_probes=2 * probes, steps=steps, block=2,
                                                                  seed=0),
    "kpm": lambda A, probes, steps: specop.spectral_density(A, method="kpm", num_probes=probes, degree=2 * steps,
                                                            seed=0),
    "trace slq": lambda A, probes, steps: specop.trace(A, method="slq", f="exp", num_probes=probes, steps=steps,
                                                       reorth="none", seed=0),
}


@pytest.mark.parametrize("method", sorted(DENSITIES))
def test_densities_compile_nothing_more_for_more_steps_and_probes(backend, method):
    """SLQ and KPM: a run of more probes and more steps (or moments), on the shape of a short run, compiles no
    program more (the steps, the probes and the host reads of the scalars change no shape)."""
    n = 31  # a size the other tests do not use
    rng = np.random.default_rng(5)
    G = rng.standard_normal((n, n))
    S = (G + G.T) / 2
    run = DENSITIES[method]
    short = run(specop.aslinearoperator(backend.asarray(S)), 1, 3)
    before = backends.compile_count()
    long = run(specop.aslinearoperator(backend.asarray(S + 0.5 * np.eye(n))), 3, 25)
    grown = backends.compile_count() - before
    assert long.matvecs > 3 * short.matvecs, (short.matvecs, long.matvecs)
    assert grown == 0, f"{method}: a run of 3 probes and 25 steps compiled {grown} programs more than 1 and 3"
