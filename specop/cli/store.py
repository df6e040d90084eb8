"""The ``--checkpoint`` directory of the ``specop`` command.

``DIR/settings.json`` holds the run's settings and a fingerprint of every operator the
command analyses: ``Z^T A Z`` for two fixed Gaussian probes ``Z``
(:func:`specop.linalg.checkpoint.operator_probe`, one product per operator). A rerun
with other settings, or with the same settings but another model or data (a changed
factory, a different ``--model`` file), is refused with one line naming the
directory; otherwise every finished stage (``DIR/<stage>.json``) and every density's
finished probes (``DIR/density-<operator>.npz``) are reused. Files are written
atomically (a temporary file renamed over the target); a file that cannot be read
back (truncated, corrupt, NaN) is refused by name before any work.

Opening a store happens in two steps: the constructor validates the directory and the
stored settings (before the model is built), :meth:`StageStore.open` compares the
operators' fingerprints and only then creates the directory.

Under ``--distributed`` :class:`RankStore` gives rank 0 the directory; the other ranks
receive its verdicts and stored results by broadcast.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from specop.cli.checks import check_checkpoint_path
from specop.cli.errors import RunError, UsageError, one_line
from specop.linalg.checkpoint import same_operator

__all__ = ["StageStore", "RankStore", "FORMAT"]

#: Version of the layout of ``settings.json``.
FORMAT = 1

_EIGSH = {"eigenvalues": list, "residual_norms": list, "matvecs": int, "converged": bool, "which": str, "k": int}
_STAGE_FILES = ("eigsh*.json", "trace.json", "density-*.npz")
_TRACE = {"value": float, "std_error": float, "matvecs": int, "method": str}


def _schema(name: str) -> dict[str, type]:
    return _TRACE if name == "trace" else _EIGSH


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _corrupt(path: Path, reason: str, remedy: str) -> UsageError:
    return UsageError(f"--checkpoint: {path} is unreadable ({reason}); {remedy}")


def _read_json(path: Path, remedy: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {one_line(exc, 200)}", remedy) from None


def _check_stage(path: Path, obj: Any) -> None:
    remedy = "delete it to recompute that stage, or use a new checkpoint path"
    if not isinstance(obj, dict):
        raise _corrupt(path, f"expected a JSON object, got {type(obj).__name__}", remedy)
    for key, kind in _schema(path.stem).items():
        value = obj.get(key)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is list and isinstance(value, list):
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
        if not ok:
            raise _corrupt(path, f"{key!r} missing or not a {kind.__name__} of finite numbers"
                           if kind is list else f"{key!r} missing or not a {kind.__name__}", remedy)
    if _schema(path.stem) is _EIGSH and len(obj["eigenvalues"]) != len(obj["residual_norms"]):
        raise _corrupt(path, "eigenvalues and residual_norms differ in length", remedy)


def _check_npz(path: Path) -> None:
    """A density checkpoint that numpy can read back entirely, with a JSON fingerprint and finite arrays."""
    remedy = "delete it to recompute that density, or use a new checkpoint path"
    try:
        with np.load(path, allow_pickle=False) as data:
            fingerprint = json.loads(str(data["__fingerprint__"]))
            arrays = {k: data[k] for k in data.files if k != "__fingerprint__"}
    except Exception as exc:  # BadZipFile, EOFError, KeyError, ValueError, OSError, zlib.error ...
        raise _corrupt(path, f"{type(exc).__name__}: {one_line(exc, 200)}", remedy) from None
    if not isinstance(fingerprint, dict):
        raise _corrupt(path, "its fingerprint is not a JSON object", remedy)
    for k, a in arrays.items():
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            raise _corrupt(path, f"array {k!r} holds NaN or Inf", remedy)


class StageStore:
    """Finished stages as JSON files in a checkpoint directory (or nothing when ``path`` is None).

    Parameters
    ----------
    path : str or None
        The ``--checkpoint`` directory; validated here, created by :meth:`open`.
    settings : dict
        The options that change the numbers; a directory written with others is refused.
    """

    def __init__(self, path: str | None, settings: dict[str, Any]) -> None:
        self.path = None if path is None else Path(path)
        self.settings = json.loads(json.dumps(settings))
        self._stored: dict[str, Any] | None = None
        if self.path is None:
            return
        check_checkpoint_path(str(path))
        stored = self.path / "settings.json"
        remedy = f"delete {self.path} or use a new checkpoint path"
        if stored.exists():
            doc = _read_json(stored, remedy)
            if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("settings"), dict)
                    and isinstance(doc.get("operators"), dict)):
                raise UsageError(f"--checkpoint: {stored} is not a settings file of this specop version (format "
                                 f"{FORMAT}); {remedy}")
            old = doc["settings"]
            if old != self.settings:
                diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
                raise UsageError(f"--checkpoint: {self.path} was written by a run with other settings "
                                 f"({', '.join(diff)}); use a new checkpoint path")
            self._stored = doc
        elif self.path.is_dir() and any(any(self.path.glob(g)) for g in _STAGE_FILES):
            raise UsageError(f"--checkpoint: {self.path} holds finished stages but no settings.json, so nothing "
                             f"says which run wrote them; {remedy}")

    def open(self, probes: dict[str, np.ndarray], dtype_name: str) -> None:
        """Compare the operators' fingerprints with the stored ones, or create the directory and store them."""
        if self.path is None:
            return
        if self._stored is not None:
            for name, now in probes.items():
                stored = self._stored["operators"].get(name)
                if stored is None or not same_operator(stored, np.asarray(now), dtype_name):
                    raise UsageError(f"--checkpoint: {self.path} was written for another {name} operator (the "
                                     "model or data of the factory changed since); use a new checkpoint path or "
                                     f"delete {self.path}")
            for stage in sorted([*self.path.glob("eigsh*.json"), *self.path.glob("trace.json")]):
                self.load(stage.stem)  # every stored file readable, before any work
            for density in sorted(self.path.glob("density-*.npz")):
                _check_npz(density)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "settings": self.settings, "dtype": dtype_name,
               "operators": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in sorted(probes.items())}}
        _write_atomic(self.path / "settings.json", json.dumps(doc, sort_keys=True))

    def file(self, name: str) -> str | None:
        """Path for a density checkpoint named ``name`` (None without a checkpoint); a stored one is checked."""
        if self.path is None:
            return None
        path = self.path / f"{name}.npz"
        if path.exists():
            _check_npz(path)
        return str(path)

    def load(self, name: str) -> dict[str, Any] | None:
        """The stored result of stage ``name`` (checked), or None."""
        if self.path is None:
            return None
        path = self.path / f"{name}.json"
        if not path.exists():
            return None
        obj = _read_json(path, "delete it to recompute that stage, or use a new checkpoint path")
        _check_stage(path, obj)
        return dict(obj)

    def save(self, name: str, result: dict[str, Any]) -> None:
        if self.path is not None:
            _write_atomic(self.path / f"{name}.json", json.dumps(result))

    def stage(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stored result of stage ``name``, or ``compute()`` stored now."""
        stored = self.load(name)
        if stored is not None:
            return stored
        result = json.loads(json.dumps(compute()))  # normalise (tuples, numpy scalars) as a reload would
        self.save(name, result)
        return result

    def close(self) -> None:
        """Nothing to release (a :class:`RankStore` removes its scratch directory)."""


def _broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _on_rank0(rank: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0; its failure is raised on every rank (a one-line copy on the others), not a hang."""
    value, error = None, None
    if rank == 0:
        try:
            value = fn()
        except Exception as exc:
            error = exc
    verdict = _broadcast(None if error is None else (isinstance(error, UsageError), one_line(error, 1000)))
    if error is not None:
        raise error
    if verdict is not None:
        usage, message = verdict
        raise UsageError(message) if usage else RunError(f"rank 0 failed: {message}")
    return value


class RankStore:
    """A :class:`StageStore` that rank 0 alone reads and writes; the other ranks get its contents by broadcast."""

    def __init__(self, path: str | None, settings: dict[str, Any], rank: int,
                 precheck: Callable[[], None] = lambda: None) -> None:
        self.rank, self.path = rank, None if path is None else Path(path)
        self._scratch: str | None = None

        def make() -> StageStore:
            precheck()
            return StageStore(path, settings)

        self._inner: StageStore | None = _on_rank0(rank, make)
        if rank != 0 and path is not None:
            self._scratch = tempfile.mkdtemp(prefix=f"specop-rank{rank}-")

    def open(self, probes: dict[str, np.ndarray], dtype_name: str) -> None:
        _on_rank0(self.rank, lambda: self._inner.open(probes, dtype_name))  # type: ignore[union-attr]

    def file(self, name: str) -> str | None:
        if self.path is None:
            return None

        def read() -> tuple[str | None, bytes | None]:
            path = self._inner.file(name)  # type: ignore[union-attr]
            return path, Path(path).read_bytes() if path and Path(path).exists() else None

        path, data = _on_rank0(self.rank, read) or (None, None)
        data = _broadcast(data)
        if self.rank == 0:
            return path
        local = Path(self._scratch) / f"{name}.npz"  # type: ignore[arg-type]  # a private copy of rank 0's
        if data is not None:
            local.write_bytes(data)
        return str(local)

    def stage(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.path is None:
            return json.loads(json.dumps(compute()))
        stored = _broadcast(_on_rank0(self.rank, lambda: self._inner.load(name)))  # type: ignore[union-attr]
        if stored is not None:
            return dict(stored)
        result = json.loads(json.dumps(compute()))
        _on_rank0(self.rank, lambda: self._inner.save(name, result))  # type: ignore[union-attr]
        return result

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
