"""Counter-based uniforms: each draw a pure function of ``(seed, sample, stream, index)``.

The Monte-Carlo Fisher needs, for every term of every sample, draws that depend only on
the seed and the sample's global index in the data set, never on how the data are
batched or split over processes, nor on how many draws are taken (the first ``S'`` of
``S`` draws are the ``S'`` draws). A counter-based generator gives exactly that: draw
``k`` of stream ``s`` of sample ``j`` is word ``k mod 4`` of the Philox4x64-10 block of
the counter ``(k // 4, s, j, 0)`` under the key ``seed`` (Salmon, Moraes, Dror & Shaw,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011, sec. 5). The blocks are computed
for a whole batch at once in vectorized numpy; the generator is the one numpy's
:class:`numpy.random.Philox` implements, bit for bit (a test checks it).

Framework-free (numpy only), so the JAX adapter can share it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["philox4x64", "uniforms"]

_M0, _M1 = np.uint64(0xD2E7470EE14C6C93), np.uint64(0xCA5A826395121157)
_W0, _W1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBB67AE8584CAA73B)
_LO = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def _mulhilo(a: np.uint64, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` 64-bit words of the 128-bit product ``a * b`` (elementwise)."""
    a0, a1 = a & _LO, a >> _32
    b0, b1 = b & _LO, b >> _32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _32) + (p01 & _LO) + (p10 & _LO)
    return p11 + (p01 >> _32) + (p10 >> _32) + (mid >> _32), a * b


def philox4x64(counters: np.ndarray, key: int) -> np.ndarray:
    """Philox4x64-10 blocks of ``counters`` (``(..., 4)`` uint64) under a 128-bit ``key``."""
    c = [counters[..., i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key & 0xFFFFFFFFFFFFFFFF), np.uint64((key >> 64) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        for r in range(10):
            if r:
                k0, k1 = k0 + _W0, k1 + _W1
            hi0, lo0 = _mulhilo(_M0, c[0])
            hi1, lo1 = _mulhilo(_M1, c[2])
            c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c, axis=-1)


def uniforms(seed: int, samples: np.ndarray, streams: int, n: int) -> np.ndarray:
    """Uniforms in (0, 1), shape ``(streams, len(samples), n)``: entry ``[s, i, k]`` is draw ``k`` of
    stream ``s`` of sample ``samples[i]`` (53-bit mantissas, never 0 or 1)."""
    samples = np.asarray(samples, dtype=np.uint64)
    blocks = -(-n // 4)
    ctr = np.zeros((streams, samples.shape[0], blocks, 4), dtype=np.uint64)
    ctr[..., 0] = np.arange(blocks, dtype=np.uint64)
    ctr[..., 1] = np.arange(streams, dtype=np.uint64)[:, None, None]
    ctr[..., 2] = samples[None, :, None]
    raw = philox4x64(ctr, seed).reshape(streams, samples.shape[0], blocks * 4)[..., :n]
    return ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
