"""spectral_density checkpoints: resume to the bit-identical result, refuse other arguments, never tear."""

from __future__ import annotations

import os

import numpy as np
import pytest

import specop
from specop.linalg.checkpoint import Checkpoint


def _matrix(n: int = 21) -> np.ndarray:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((n, n))
    return (M + M.T) / np.sqrt(2 * n)


def assert_same_result(a, b) -> None:
    assert a.matvecs == b.matvecs
    if isinstance(a, specop.SLQDensity):
        assert np.array_equal(a.nodes, b.nodes) and np.array_equal(a.weights, b.weights)
    else:
        assert np.array_equal(a.probe_moments, b.probe_moments) and a.bounds == b.bounds


@pytest.mark.parametrize("method", ["slq", "kpm"])
def test_more_probes_on_the_same_checkpoint_equal_a_fresh_run(backend, tmp_path, method):
    op = backend.asarray(_matrix())
    path = tmp_path / "ck.npz"
    kw = {"method": method, "steps": 12, "degree": 16, "seed": 5}
    specop.spectral_density(op, num_probes=3, checkpoint=path, **kw)
    resumed = specop.spectral_density(op, num_probes=6, checkpoint=path, **kw)
    assert_same_result(resumed, specop.spectral_density(op, num_probes=6, **kw))


@pytest.mark.parametrize("method", ["slq", "kpm"])
def test_interrupted_run_resumes_to_the_identical_result(backend, tmp_path, method):
    op = backend.asarray(_matrix())
    path = tmp_path / "ck.npz"
    kw = {"method": method, "steps": 10, "degree": 12, "seed": 2, "num_probes": 8, "block": 4}

    def stop_after_first_block(done: int, total: int) -> None:
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        specop.spectral_density(op, checkpoint=path, progress=stop_after_first_block, **kw)
    assert path.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert_same_result(specop.spectral_density(op, checkpoint=path, **kw), specop.spectral_density(op, **kw))


@pytest.mark.parametrize("change", [{"steps": 11}, {"method": "kpm"}, {"kind": "gaussian"}, {"block": 2},
                                    {"degree": 9}])
def test_a_checkpoint_with_other_arguments_is_refused(backend, tmp_path, change):
    A, path = backend.asarray(_matrix()), tmp_path / "ck.npz"
    method = "kpm" if "degree" in change else "slq"
    kw = {"method": method, "steps": 10, "degree": 8, "seed": 1, "num_probes": 2}
    specop.spectral_density(A, checkpoint=path, **kw)
    name = next(iter(change))
    with pytest.raises(ValueError, match=name):
        specop.spectral_density(A, checkpoint=path, **{**kw, **change})


def test_seed_none_reuses_the_stored_seed(backend, tmp_path):
    A, path = backend.asarray(_matrix()), tmp_path / "ck.npz"
    first = specop.spectral_density(A, num_probes=2, steps=8, seed=None, checkpoint=path)
    key = Checkpoint(path, {}).stored_fingerprint()["seed"]
    resumed = specop.spectral_density(A, num_probes=4, steps=8, seed=None, checkpoint=path)
    assert np.array_equal(resumed.nodes[:2], first.nodes)
    assert_same_result(resumed, specop.spectral_density(A, num_probes=4, steps=8, seed=key))


def test_save_is_atomic(tmp_path, monkeypatch):
    ck = Checkpoint(tmp_path / "ck.npz", {"a": 1})
    ck.save({"x": np.arange(3.0)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        ck.save({"x": np.arange(5.0)})
    assert np.array_equal(ck.load()["x"], np.arange(3.0))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
