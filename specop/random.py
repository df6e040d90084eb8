"""Seeded probe vectors, identical on every backend, device and process.

Probe ``i`` is a pure function of ``(seed, i, n, kind)``: it is drawn on the host
from a counter-based generator (numpy's :class:`~numpy.random.Philox`, keyed by
the seed, with the probe index in the top word of the 256-bit counter, so every
probe has its own non-overlapping stream) and moved to the target device in
chunks of at most ``CHUNK`` entries, so host memory stays bounded for any ``n``.
Drawing probes ``4..7`` alone (``start=4``) gives the same vectors as the last
four of a batch of eight; the number of processes does not matter either.

References
----------
J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011 (the Philox generator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from specop import backends
from specop._validate import check_choice, check_positive_int, check_seed

__all__ = ["probes", "resolve_seed", "KINDS", "CHUNK"]

KINDS = ("rademacher", "gaussian", "sphere")
#: Entries drawn and transferred per chunk (a multiple of 64).
CHUNK = 1 << 22


def resolve_seed(seed: int | np.random.Generator | None) -> int:
    """A non-negative integer key from ``seed`` (int, numpy Generator or None).

    A Generator is advanced by one draw, so a run seeded by it is reproducible
    from the Generator's state; ``None`` draws fresh OS entropy.
    """
    seed = check_seed(seed)
    if seed is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint64).view(np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    return int(seed)


def _chunks(n: int, key: int, i: int, kind: str):
    """Yield float64 host chunks of probe ``i`` (before sphere normalisation)."""
    bitgen = np.random.Philox(key=key, counter=np.array([0, 0, 0, i], dtype=np.uint64))
    gen = np.random.Generator(bitgen)
    for lo in range(0, n, CHUNK):
        size = min(CHUNK, n - lo)
        if kind == "rademacher":
            raw = bitgen.random_raw((size + 63) // 64).astype("<u8")
            bits = np.unpackbits(raw.view(np.uint8), bitorder="little")[:size]
            yield 1.0 - 2.0 * bits.astype(np.float64)
        else:
            yield gen.standard_normal(size)


def _block_sums(chunk: np.ndarray) -> list[float]:
    """Sums of squares of the 64-entry blocks of a chunk (chunks start at multiples of 64).

    Added up exactly (``math.fsum``), they give a norm that does not depend on ``CHUNK``.
    """
    sq = chunk * chunk
    full = sq.shape[0] - sq.shape[0] % 64
    return [*sq[:full].reshape(-1, 64).sum(axis=1).tolist(), float(sq[full:].sum())]


def probes(n: int, count: int, *, seed: int | np.random.Generator | None, kind: str = "rademacher",
           like: Any = None, dtype: Any = None, start: int = 0) -> Any:
    """Probe vectors ``start, ..., start + count - 1`` as the columns of an ``(n, count)`` array.

    Parameters
    ----------
    n : int
        Length of each probe.
    count : int
        Number of probes.
    seed : int, numpy Generator or None
        Key of the probe streams.
    kind : {"rademacher", "gaussian", "sphere"}
        Random signs, standard normal entries, or normal vectors scaled to unit norm.
    like : optional
        Backend, dtype and device of the result: an operator, an array, a
        namespace or a backend name (default numpy float64).
    dtype : optional
        Override of the dtype (``"float32"``, ``"float64"`` or a dtype object).
    start : int
        Index of the first probe.

    Returns
    -------
    array, shape (n, count)
        Column ``j`` is probe ``start + j``; bit-identical on every backend for
        the same dtype.
    """
    from specop.operators.base import resolve_like

    n = check_positive_int(n, "n")
    count, start = check_positive_int(count, "count", 0), check_positive_int(start, "start", 0)
    check_choice(kind, "kind", KINDS)
    key = resolve_seed(seed)
    xp, dtype, device = resolve_like(like, dtype)
    backends.check_floating(xp, dtype, "probes")
    if n * count <= CHUNK:  # small enough for one host block: drawn there, moved in one transfer
        host = np.empty((n, count))
        for j in range(count):
            host[:, j] = np.concatenate(list(_probe_chunks(n, key, start + j, kind)))
        return backends.from_numpy(host, xp, device, dtype)
    kw = {} if device is None else {"device": device}
    out = xp.empty((n, count), dtype=dtype, **kw)
    for j in range(count):
        lo = 0
        for chunk in _probe_chunks(n, key, start + j, kind):
            block = backends.from_numpy(chunk, xp, device, dtype)
            out = backends.assign(out, (slice(lo, lo + chunk.shape[0]), j), block)
            lo += chunk.shape[0]
    return out


def _probe_chunks(n: int, key: int, i: int, kind: str) -> Any:
    """Yield the float64 host chunks of probe ``i``, sphere probes scaled to unit norm."""
    scale = 1.0
    if kind == "sphere":
        sq = math.fsum(s for c in _chunks(n, key, i, kind) for s in _block_sums(c))
        scale = 1.0 / np.sqrt(sq)
    for chunk in _chunks(n, key, i, kind):
        yield chunk * scale if kind == "sphere" else chunk
