"""Seeded probes: identical on every backend, for every chunking, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from test_operators_strategies import eps, run

import specop
import specop.random
from specop import backends

KINDS = st.sampled_from(specop.random.KINDS)
SEEDS = st.integers(0, 2**63 - 1)
DTYPES = st.sampled_from(["float32", "float64"])


def host_probes(n, count, seed, kind, dtype="float64", start=0):
    return specop.random.probes(n, count, seed=seed, kind=kind, like="numpy", dtype=dtype, start=start)


def test_probes_bit_identical_to_numpy(backend):
    def prop(n, count, seed, kind, dtype):
        like = backend.asarray(np.zeros(1), dtype)
        P = specop.random.probes(n, count, seed=seed, kind=kind, like=like)
        assert backends.backend_name(P) == backends.backend_name(backend.xp)
        assert tuple(P.shape) == (n, count) and P.dtype == like.dtype
        np.testing.assert_array_equal(backend.to_numpy(P), host_probes(n, count, seed, kind, dtype))

    run(backend, prop, st.integers(1, 300), st.integers(0, 4), SEEDS, KINDS, DTYPES)


def test_probes_follow_operator(backend):
    def prop(n, seed, kind):
        op = specop.IdentityOperator(n, like=backend.asarray(np.zeros(1), "float32"))
        P = specop.random.probes(n, 2, seed=seed, kind=kind, like=op)
        assert P.dtype == op.dtype
        assert backends.same_device(backends.device_of(P), op.device)
        np.testing.assert_array_equal(backend.to_numpy(P), host_probes(n, 2, seed, kind, "float32"))

    run(backend, prop, st.integers(1, 100), SEEDS, KINDS)


def test_probes_independent_of_start_and_count():
    def prop(n, total, split, seed, kind):
        split = min(split, total)
        full = host_probes(n, total, seed, kind)
        head = host_probes(n, split, seed, kind)
        tail = host_probes(n, total - split, seed, kind, start=split)
        np.testing.assert_array_equal(np.concatenate([head, tail], axis=1), full)

    run(_numpy(), prop, st.integers(1, 300), st.integers(0, 8), st.integers(0, 8), SEEDS, KINDS)


def test_probes_independent_of_chunk_size(monkeypatch):
    def prop(n, count, seed, kind, chunks):
        want = host_probes(n, count, seed, kind)
        with monkeypatch.context() as m:
            m.setattr(specop.random, "CHUNK", 64 * chunks)
            got = host_probes(n, count, seed, kind)
        np.testing.assert_array_equal(got, want)

    run(_numpy(), prop, st.integers(1, 700), st.integers(1, 3), SEEDS, KINDS, st.integers(1, 4))


def test_rademacher_entries_are_signs(backend):
    def prop(n, seed):
        P = backend.to_numpy(specop.random.probes(n, 3, seed=seed, like=backend.xp))
        assert set(np.unique(P)) <= {-1.0, 1.0}

    run(backend, prop, st.integers(1, 300), SEEDS)


def test_sphere_probes_have_unit_norm(backend):
    def prop(n, seed, dtype):
        like = backend.asarray(np.zeros(1), dtype)
        P = backend.to_numpy(specop.random.probes(n, 3, seed=seed, kind="sphere", like=like))
        # each entry is rounded once to dtype: the norm is within sqrt(n) * eps of 1
        np.testing.assert_allclose(np.linalg.norm(P.astype(np.float64), axis=0), 1.0, rtol=0,
                                   atol=2 * np.sqrt(n) * eps(dtype))

    run(backend, prop, st.integers(1, 300), SEEDS, DTYPES)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_probe_moments_on_a_big_draw(backend, kind):
    N = 200_000
    P = backend.to_numpy(specop.random.probes(N // 2, 2, seed=11, kind=kind, like=backend.xp)).ravel()
    # mean ~ N(0, 1/N); variance of x^2 is 2 (gaussian) or 0 (signs): 5-sigma bands
    assert abs(P.mean()) < 5 / np.sqrt(N)
    assert abs(P.var() - 1.0) < 5 * np.sqrt(2 / N)
    assert np.corrcoef(P[: N // 2], P[N // 2:])[0, 1] < 5 / np.sqrt(N // 2)


def test_distinct_probes_differ():
    P = host_probes(256, 6, seed=1, kind="rademacher")
    for i in range(6):
        for j in range(i):
            assert not np.array_equal(P[:, i], P[:, j])
    assert not np.array_equal(host_probes(256, 1, 1, "gaussian"), host_probes(256, 1, 2, "gaussian"))


def test_generator_seed_is_reproducible(backend):
    def draw(rng):
        return backend.to_numpy(specop.random.probes(50, 2, seed=rng, kind="gaussian", like=backend.xp))

    a, b = np.random.default_rng(5), np.random.default_rng(5)
    first_a, first_b = draw(a), draw(b)
    np.testing.assert_array_equal(first_a, first_b)
    np.testing.assert_array_equal(draw(a), draw(b))
    # the Generator advances: a second draw from it differs from the first
    assert not np.array_equal(draw(np.random.default_rng(5)), draw(a))


def test_resolve_seed():
    assert specop.random.resolve_seed(7) == 7
    assert specop.random.resolve_seed(np.random.default_rng(3)) == specop.random.resolve_seed(np.random.default_rng(3))
    assert specop.random.resolve_seed(None) != specop.random.resolve_seed(None)


def test_torch_probes_acceptance():
    """Acceptance: probes on a torch operator equal numpy bit for bit; start=4 gives the last 4."""
    torch = pytest.importorskip("torch")
    op = specop.DenseOperator(torch.eye(1000, dtype=torch.float64))
    P = specop.random.probes(1000, 8, seed=3, like=op)
    assert isinstance(P, torch.Tensor)
    np.testing.assert_array_equal(P.numpy(), specop.random.probes(1000, 8, seed=3))
    tail = specop.random.probes(1000, 4, seed=3, like=op, start=4)
    assert torch.equal(tail, P[:, 4:])


def _numpy():
    from conftest import Backend

    return Backend("numpy", backends.namespace("numpy"))
