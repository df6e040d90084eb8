"""tr f(A) for f = log, sqrt, inv: what SLQ can see of the spectrum's lower end, said with numbers.

Every Ritz value lies in ``[lambda_min, lambda_max]``: a Ritz value ``<= 0`` (``< 0`` for sqrt)
proves that ``A`` is not positive definite (semidefinite) and is an error. SLQ cannot prove the
converse; when a Ritz interval ``[theta - rho, theta + rho]`` reaches 0 a non-positive eigenvalue
is not excluded and trace warns with the numbers. A finite value without either means that no
eigenvalue ``<= 0`` is within reach of any Ritz value.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import strategies as st
from strategies import SymCase, run, symmetric_matrices

import specop

POSITIVE = ("log", "sqrt", "inv")


@pytest.mark.parametrize("f", POSITIVE)
def test_a_hidden_small_negative_eigenvalue_warns_with_numbers(backend, f):
    # a continuous spectrum from -1e-4 to 1: 30 steps do not resolve the bottom, every Ritz value is
    # positive (f applies), but the smallest is within its residual of 0 (it used to pass silently)
    d = np.linspace(-1e-4, 1.0, 2000)
    op = specop.DiagonalOperator(backend.asarray(d))
    pattern = r"cannot exclude an eigenvalue <= 0: the Ritz value [0-9.e-]+ \(probe \d+\) is within its residual"
    with pytest.warns(RuntimeWarning, match=pattern + r" [0-9.e-]+ of 0"):
        est = specop.trace(op, f=f, num_probes=4, steps=30, seed=0)
    assert np.isfinite(est.value)


def test_semidefinite_sqrt_and_callables_that_leave_their_domain():
    d = np.array([0.0, 1.0, 2.0, 4.0])
    est = specop.trace(np.diag(d), f="sqrt", num_probes=3, steps=4, seed=0)  # a zero eigenvalue is fine for sqrt
    assert np.isfinite(est.value)
    with pytest.raises(ValueError, match=r"positive definite.*Ritz value is [-0-9.e]+ <= 0"):
        specop.logdet(np.diag(d), num_probes=3, steps=4, seed=0)
    with pytest.raises(ValueError, match=r"f: expected a function finite at the Ritz values, got f\("):
        specop.trace(np.diag(d + 1.0), f=lambda t: np.log(t - 2.0), num_probes=3, steps=4, seed=0)


def test_errors_are_proofs_and_silence_means_nothing_in_reach(backend):
    # matrices shifted so that lambda_min is near 0, on either side; every outcome must be sound
    def prop(case: SymCase, shift: float, f: str, steps: int) -> None:
        w = case.eigenvalues
        A = case.A + (shift * max(case.norm, 1.0) - w[0]) * np.eye(case.n)
        lam_min = float(np.linalg.eigvalsh(A)[0])
        scale = max(float(np.max(np.abs(np.linalg.eigvalsh(A)))), 1e-300)
        op = specop.DenseOperator(backend.asarray(A, case.dtype))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                specop.trace(op, f=f, num_probes=2, steps=steps, seed=case.seed, reorth="full")
            except ValueError as err:
                # a Ritz value <= 0 is a proof: lambda_min is at most it (up to the matvec's rounding)
                assert lam_min <= 4 * case.n * case.eps * scale, (str(err), lam_min)
                return
        warned = any("cannot exclude" in str(c.message) for c in caught)
        if steps >= case.n and not warned:  # an exhausted Krylov space sees the whole spectrum of the probes
            assert lam_min > -4 * case.n * case.eps * scale, lam_min

    run(backend, prop, symmetric_matrices(min_size=2, max_size=20, structures=("random", "indefinite", "repeated",
                                                                               "diagonal", "clustered")),
        st.sampled_from((-1e-2, -1e-6, 1e-6, 1e-2, 0.5)), st.sampled_from(POSITIVE), st.integers(2, 25),
        max_examples=10 if backend.name in ("jax", "array_api_strict") else 60)
