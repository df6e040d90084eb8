"""Atomic checkpoints of finished per-probe work, so an interrupted run loses nothing.

A checkpoint is one ``.npz`` file: a JSON *fingerprint* of every argument that
changes the numbers (method, size, dtype, steps, seed key, ...) plus the arrays of
the finished probes. It is written to a temporary file in the same directory,
flushed to disk and renamed over the old one (``os.replace``), so a crash at any
moment leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Checkpoint"]


class Checkpoint:
    """A resumable store of per-probe results at ``path``.

    Parameters
    ----------
    path : str or Path
        File to read and write (``.npz`` is appended if missing).
    fingerprint : dict
        JSON-serialisable settings; a stored checkpoint with a different
        fingerprint is refused with a ``ValueError`` naming the differences.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        path = Path(path)
        self.path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def stored_fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint on disk, or None if there is no checkpoint yet."""
        if not self.path.exists():
            return None
        with np.load(self.path, allow_pickle=False) as data:
            return json.loads(str(data["__fingerprint__"]))

    def load(self) -> dict[str, np.ndarray]:
        """Arrays of the stored checkpoint (empty dict if none)."""
        stored = self.stored_fingerprint()
        if stored is None:
            return {}
        if stored != self.fingerprint:
            diff = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
            detail = ", ".join(f"{k}: stored {stored.get(k)!r} vs now {self.fingerprint.get(k)!r}" for k in diff)
            raise ValueError(f"checkpoint {self.path} was written with other arguments ({detail}); "
                             "delete it or pass the same arguments")
        with np.load(self.path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files if k != "__fingerprint__"}

    def save(self, arrays: dict[str, np.ndarray]) -> None:
        """Atomically replace the checkpoint with ``arrays``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                payload: dict[str, Any] = {"__fingerprint__": np.array(json.dumps(self.fingerprint, sort_keys=True))}
                payload.update(arrays)
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


#: Seed of the fixed probes that identify an operator (see :func:`operator_probe`).
PROBE_SEED = 0x5EC0


def operator_probe(A: Any, count: int = 2) -> np.ndarray:
    """``Z^T A Z`` for ``count`` fixed Gaussian probes ``Z``: a cheap identity of the operator (host float64).

    Two operators of the same shape and dtype but different entries give different
    values (with probability one); the same operator gives the same values up to the
    rounding of its product. Costs one ``matmat`` with ``count`` columns.
    """
    from specop import backends
    from specop.random import probes

    Z = probes(A.shape[1], count, seed=PROBE_SEED, kind="gaussian", like=A)
    AZ = A.matmat(Z)
    return (backends.to_numpy(Z).astype(np.float64).T @ backends.to_numpy(AZ).astype(np.float64)).ravel()


def same_operator(stored: Any, now: np.ndarray, dtype_name: str) -> bool:
    """Whether two :func:`operator_probe` results come from the same operator (to rounding)."""
    stored = np.asarray(stored, dtype=np.float64)
    if stored.shape != now.shape or not np.isfinite(stored).all():
        return False
    eps = float(np.finfo(dtype_name).eps)
    scale = max(float(np.max(np.abs(now))), float(np.finfo(np.float64).tiny)) if now.size else 1.0
    return bool(np.all(np.abs(stored - now) <= 1e4 * eps * scale))
