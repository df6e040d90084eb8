"""Atomic checkpoints of finished per-probe work, so an interrupted run loses nothing.

A checkpoint is one ``.npz`` file: a JSON *fingerprint* of every argument that
changes the numbers (method, size, dtype, backend, steps, seed key, ...), the
*identity* of the operator (``Z^T A Z`` of fixed probes, :func:`operator_probe`) and
the arrays of the finished probes. It is written to a temporary file in the same
directory, flushed to disk and renamed over the old one (``os.replace``), so a crash
at any moment leaves either the previous or the new checkpoint, never a torn one.

Reading trusts nothing: a file that cannot be read (truncated, not a zip, a missing
fingerprint), a fingerprint or an operator that differs, and a stored array that is
missing, of the wrong shape or dtype, or not finite are all refused with an error
naming the file (and the array), never used.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Checkpoint", "operator_probe", "same_operator"]

#: Name of the stored operator identity (:func:`operator_probe`) inside a checkpoint file.
IDENTITY = "__operator__"
#: One entry of a schema: ``(shape, kind)``, dims an int or a name shared between arrays, kind "f" or "i".
Spec = tuple[tuple[int | str, ...], str]


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

    def _read(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """``(fingerprint, arrays)`` on disk, or None if there is no checkpoint yet; every read error names the file."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in data.files}  # read all now: a torn member fails here
        except OSError as err:
            if isinstance(err, (IsADirectoryError, PermissionError, FileNotFoundError)):
                raise type(err)(f"checkpoint {self.path}: cannot be read: {err}") from err
            raise self._corrupt(err) from err
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, zlib.error) as err:
            raise self._corrupt(err) from err
        except Exception as err:  # whatever else a torn or forged zip makes numpy or zipfile raise
            raise self._corrupt(err) from err
        raw = arrays.pop("__fingerprint__", None)
        if raw is None or raw.shape != () or raw.dtype.kind != "U":
            raise self._corrupt("it holds no fingerprint")
        try:
            fingerprint = json.loads(str(raw))
        except ValueError as err:
            raise self._corrupt(f"its fingerprint is not JSON ({err})") from err
        if not isinstance(fingerprint, dict):
            raise self._corrupt("its fingerprint is not a JSON object")
        return fingerprint, arrays

    def _corrupt(self, why: Any) -> ValueError:
        detail = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else str(why)
        return ValueError(f"checkpoint {self.path}: not a readable specop checkpoint ({detail}); "
                          "delete it to start afresh")

    def stored_fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint on disk, or None if there is no checkpoint yet."""
        got = self._read()
        return None if got is None else got[0]

    def load(self, schema: dict[str, Spec] | None = None, identity: np.ndarray | None = None,
             dtype_name: str = "float64") -> dict[str, np.ndarray]:
        """Arrays of the stored checkpoint (empty dict if none), checked before any is used.

        Parameters
        ----------
        schema : dict, optional
            ``{name: (shape, kind)}`` of every array the caller reads: each must be present,
            of that shape (a named dim must agree across arrays) and kind (``"f"`` float,
            finite; ``"i"`` integer, non-negative). Arrays outside the schema are refused.
        identity : numpy.ndarray, optional
            :func:`operator_probe` of the operator now; the stored one must match it
            (:func:`same_operator`, to the rounding of ``dtype_name``).
        """
        got = self._read()
        if got is None:
            return {}
        stored, arrays = got
        if stored != self.fingerprint:
            diff = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
            detail = ", ".join(f"{k}: stored {stored.get(k)!r} vs now {self.fingerprint.get(k)!r}" for k in diff)
            raise ValueError(f"checkpoint {self.path} was written with other arguments ({detail}); "
                             "delete it or pass the same arguments")
        if identity is not None:
            mine = arrays.pop(IDENTITY, None)
            if mine is None:
                raise self._corrupt(f"it holds no operator identity ({IDENTITY})")
            if not same_operator(mine, identity, dtype_name):
                raise ValueError(f"checkpoint {self.path} was written for another operator of the same size "
                                 f"(Z^T A Z of fixed probes: stored {np.asarray(mine).ravel()[:4]} vs now "
                                 f"{identity.ravel()[:4]}); delete it or pass the same operator")
        if schema is not None:
            self._check(arrays, schema)
        return arrays

    def _check(self, arrays: dict[str, np.ndarray], schema: dict[str, Spec]) -> None:
        """Refuse a stored array that is missing, unexpected, of the wrong shape or kind, or not finite."""
        dims: dict[str, int] = {}
        for name, (shape, kind) in schema.items():
            if name not in arrays:
                raise self._bad(name, "is missing")
            a = arrays[name]
            if a.dtype.kind not in ("f" if kind == "f" else "iu"):
                raise self._bad(name, f"has dtype {a.dtype}, expected {'float' if kind == 'f' else 'integer'}")
            if a.ndim != len(shape):
                raise self._bad(name, f"has shape {a.shape}, expected {len(shape)} dimensions")
            for size, want in zip(a.shape, shape, strict=True):
                want = dims.setdefault(want, size) if isinstance(want, str) else want
                if size != want:
                    raise self._bad(name, f"has shape {a.shape}, expected {_show(shape, dims)}")
            if kind == "f" and not np.isfinite(a).all():
                raise self._bad(name, "holds NaN or Inf")
            if kind == "i" and a.size and a.min() < 0:
                raise self._bad(name, "holds a negative count")
        extra = sorted(set(arrays) - set(schema))
        if extra:
            raise self._bad(extra[0], "is not an array of this run")

    def _bad(self, name: str, what: str) -> ValueError:
        return ValueError(f"checkpoint {self.path}: the stored array {name!r} {what}; delete it to start afresh")

    def save(self, arrays: dict[str, np.ndarray], identity: np.ndarray | None = None) -> None:
        """Atomically replace the checkpoint with ``arrays`` (and the operator ``identity``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                payload: dict[str, Any] = {"__fingerprint__": np.array(json.dumps(self.fingerprint, sort_keys=True))}
                payload.update(arrays)
                if identity is not None:
                    payload[IDENTITY] = np.asarray(identity, dtype=np.float64)
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _show(shape: tuple[int | str, ...], dims: dict[str, int]) -> tuple[int | str, ...]:
    return tuple(dims.get(d, d) if isinstance(d, str) else d for d in shape)


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
