"""The framework-neutral data-set loss rules (``specop.curvature._core``)."""

from __future__ import annotations

import numpy as np
import pytest

import specop
from specop.curvature import _core
from specop.linalg.checkpoint import operator_probe, same_operator


def test_scalar_loss_is_a_mean_over_count():
    b = _core.as_batch_loss(np.float64(2.5), 4)
    assert b.total == 10.0 and b.normalizer == 4


def test_sum_normalizer_pair_and_errors():
    b = _core.as_batch_loss((np.float64(3.0), np.float64(2.0)), 7)
    assert b.total == 3.0 and b.normalizer == 2.0
    with pytest.raises(ValueError, match="scalar"):
        _core.as_batch_loss(np.ones(3), 3)
    with pytest.raises(ValueError, match="tuple of 3"):
        _core.as_batch_loss((1.0, 2.0, 3.0), 3)


def test_accumulator_is_independent_of_the_batching():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 2.0, 20)
    terms = rng.standard_normal(20)
    exact = (w * terms).sum() / w.sum()
    for cuts in ([20], [7, 13], [1, 1, 18], [5, 5, 5, 5]):
        acc, lo = _core.Accumulator(), 0
        for c in cuts:
            acc.add((w[lo:lo + c] * terms[lo:lo + c]).sum(), w[lo:lo + c].sum())
            lo += c
        assert abs(acc.result() - exact) <= 1e-14 * abs(exact)


def test_accumulator_refuses_mixed_and_zero_normalizers():
    acc = _core.Accumulator()
    acc.add(1.0, None)
    with pytest.raises(ValueError, match="normalizer"):
        acc.add(1.0, 2.0)
    acc = _core.Accumulator()
    acc.add(1.0, 0.0)
    with pytest.raises(ValueError, match="not positive"):
        acc.result()
    summed = _core.Accumulator()
    summed.add(1.5, None)
    summed.add(2.0, None)
    assert summed.result() == 3.5


def test_iterate_passes_and_refuses_one_shot_iterators():
    data = [1, 2, 3]
    passes = _core.iterate(data, 2, lambda d: False)
    assert list(passes()) == [1, 2] and list(passes()) == [1, 2]
    with pytest.raises(TypeError, match="one-shot"):
        _core.iterate(iter(data), None, lambda d: False)
    assert list(_core.iterate("batch", None, lambda d: d == "batch")()) == ["batch"]
    assert list(_core.sample_offsets([3, 4, 2], start=5)) == [5, 8, 12]


def test_operator_probe_identifies_the_operator():
    A = np.diag(np.arange(1.0, 6.0))
    B = A.copy()
    B[0, 0] += 1e-6
    pa = operator_probe(specop.aslinearoperator(A))
    assert same_operator(pa, operator_probe(specop.aslinearoperator(A.copy())), "float64")
    assert not same_operator(pa, operator_probe(specop.aslinearoperator(B)), "float64")
    assert not same_operator(pa[:2], pa, "float64")
