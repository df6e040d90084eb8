"""Checkpoints trust nothing they read: corrupt files, forged arrays and other operators are refused.

Every refusal is an error that names the file (and the array), never a ``KeyError`` or
``BadZipFile`` from deep inside numpy, and never a silently reused result; a resumed run,
deflated or not, float32 or float64, is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import interrupted_then_resumed

import specop
from specop.linalg.checkpoint import IDENTITY


def _matrix(n: int = 21, seed: int = 0) -> np.ndarray:
    M = np.random.default_rng(seed).standard_normal((n, n))
    return (M + M.T) / np.sqrt(2 * n)


KW = {"num_probes": 4, "steps": 6, "seed": 3, "block": 2}


def _written(tmp_path, method: str = "slq", **kw) -> tuple:
    """A finished checkpoint in a fresh folder (hypothesis reuses ``tmp_path`` across examples)."""
    A, path = _matrix(), Path(tempfile.mkdtemp(dir=tmp_path)) / "ck.npz"
    full = {**KW, "method": method, "degree": 10, **kw}
    ref = specop.spectral_density(A, checkpoint=path, **full)
    return A, path, full, ref


def _same(a, b) -> bool:
    if isinstance(a, specop.SLQDensity):
        return a.matvecs == b.matvecs and np.array_equal(a.nodes, b.nodes) and np.array_equal(a.weights, b.weights)
    return a.matvecs == b.matvecs and np.array_equal(a.probe_moments, b.probe_moments)


def _refused(path, call, *names: str) -> None:
    """``call`` raises an error (ValueError or OSError) that names ``path`` and each of ``names``."""
    with pytest.raises((ValueError, OSError)) as err:
        call()
    assert type(err.value) in (ValueError, IsADirectoryError, PermissionError), repr(err.value)
    msg = str(err.value)
    assert str(path) in msg, msg
    for name in names:
        assert name in msg, msg


_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(st.data())
def test_a_truncated_checkpoint_is_refused_naming_the_file(tmp_path, data):
    A, path, kw, _ = _written(tmp_path)
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    path.write_bytes(raw[:cut])
    _refused(path, lambda: specop.spectral_density(A, checkpoint=path, **kw))


@_SETTINGS
@given(st.binary(max_size=600))
def test_garbage_bytes_are_refused_naming_the_file(tmp_path, garbage):
    A, path, kw, _ = _written(tmp_path)
    path.write_bytes(garbage)
    _refused(path, lambda: specop.spectral_density(A, checkpoint=path, **kw))


@_SETTINGS
@given(st.data())
def test_flipped_bytes_are_refused_or_harmless(tmp_path, data):
    A, path, kw, ref = _written(tmp_path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    try:
        got = specop.spectral_density(A, checkpoint=path, **kw)
    except (ValueError, OSError) as err:
        assert str(path) in str(err), str(err)
        return
    assert _same(got, ref), "a changed checkpoint changed the result silently"


def _forge(path, edit) -> None:
    """Rewrite the checkpoint with a valid header but arrays changed by ``edit(dict)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    np.savez(path, **arrays)


FORGERIES = {
    "NaN node": (lambda a: a["a"].__setitem__((0, 0), np.nan), "'a'", "NaN"),
    "Inf weight": (lambda a: a["b"].__setitem__((1, 2), np.inf), "'b'", "NaN or Inf"),
    "missing array": (lambda a: a.pop("matvecs"), "'matvecs'", "missing"),
    "wrong shape": (lambda a: a.__setitem__("a", a["a"][:, :3]), "'a'", "shape"),
    "wrong dtype": (lambda a: a.__setitem__("matvecs", a["matvecs"].astype(np.float64)), "'matvecs'", "dtype"),
    "negative count": (lambda a: a.__setitem__("matvecs", -a["matvecs"]), "'matvecs'", "negative"),
    "strings": (lambda a: a.__setitem__("b", np.array(["x"] * 4)), "'b'", "dtype"),
    "extra array": (lambda a: a.__setitem__("zzz", np.zeros(3)), "'zzz'", "not an array"),
    "probes disagree": (lambda a: a.__setitem__("b", a["b"][:1]), "'b'", "shape"),
    "no identity": (lambda a: a.pop(IDENTITY), IDENTITY, "identity"),
    "no fingerprint": (lambda a: a.pop("__fingerprint__"), "fingerprint", "readable"),
    "fingerprint not JSON": (lambda a: a.__setitem__("__fingerprint__", np.array("{not json")), "JSON", "readable"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_arrays_are_refused_naming_the_array(tmp_path, name):
    edit, array, what = FORGERIES[name]
    A, path, kw, _ = _written(tmp_path)
    _forge(path, edit)
    _refused(path, lambda: specop.spectral_density(A, checkpoint=path, **kw), array, what)


def test_kpm_and_deflated_arrays_are_checked_too(tmp_path):
    A, path, kw, _ = _written(tmp_path, method="kpm")
    _forge(path, lambda a: a["bounds"].__setitem__(0, np.nan))
    _refused(path, lambda: specop.spectral_density(A, checkpoint=path, **kw), "'bounds'")
    A, path, kw, _ = _written(tmp_path, deflate=2)
    _forge(path, lambda a: a.__setitem__("deflate_vectors", a["deflate_vectors"][:, :1]))
    _refused(path, lambda: specop.spectral_density(A, checkpoint=path, **kw), "'deflate_vectors'", "shape")


def test_another_operator_of_the_same_size_is_refused(backend, tmp_path):
    path = tmp_path / "ck.npz"
    kw = {**KW, "num_probes": 2}
    specop.spectral_density(backend.asarray(_matrix(seed=0)), checkpoint=path, **kw)
    for other in (_matrix(seed=1), _matrix(seed=0) * (1 + 1e-6), _matrix(seed=0) + np.eye(21)):
        _refused(path, lambda o=other: specop.spectral_density(backend.asarray(o), checkpoint=path, **kw),
                 "another operator")
    again = specop.spectral_density(backend.asarray(_matrix(seed=0)), checkpoint=path, **{**kw, "num_probes": 4})
    assert _same(again, specop.spectral_density(backend.asarray(_matrix(seed=0)), **{**kw, "num_probes": 4}))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reorth", ["none", "full"])
def test_resumed_deflated_run_is_bit_identical(backend, tmp_path, dtype, reorth):
    # the deflation basis came as a transposed view and went back as a row-major copy: another BLAS
    # path, other rounding (torch float32 and array-api-strict differed by 1e-7 and 1e-15)
    n, k = 60, 4
    rng = np.random.default_rng(5)
    M = rng.standard_normal((n, n))
    A = backend.asarray(((M + M.T) / np.sqrt(2 * n) + np.diag(np.r_[np.zeros(n - k), 3.0 + np.arange(k)])), dtype)
    kw = {"num_probes": 6, "steps": 12, "seed": 4, "deflate": k, "block": 3, "reorth": reorth}
    path = tmp_path / "ck.npz"
    resumed, fresh = interrupted_then_resumed(A, path, 3, **kw)
    assert np.array_equal(resumed.deflated, fresh.deflated)
    assert _same(resumed, fresh), np.max(np.abs(resumed.nodes - fresh.nodes))


def test_a_directory_or_another_backend_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    A, path, kw, _ = _written(tmp_path)
    _refused(path, lambda: specop.spectral_density(torch.from_numpy(_matrix()), checkpoint=path, **kw), "backend")
    folder = tmp_path / "dir.npz"
    folder.mkdir()
    _refused(folder, lambda: specop.spectral_density(A, checkpoint=folder, **kw))
    stored = json.loads(str(np.load(path)["__fingerprint__"]))
    assert stored["backend"] == "numpy" and re.fullmatch(r"\d+", str(stored["seed"]))
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]
