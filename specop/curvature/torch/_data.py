"""The data-parallel collectives of the operators.

With ``torch.distributed`` initialized, each batch sum ``sum_b X_b`` and the normalizer
``sum_b Z_b`` are summed over the processes in one ``all_reduce`` before the division,
so every process gets the result of one process holding the union of the shards.
"""

from __future__ import annotations

import datetime
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["distributed", "wait_collective", "all_reduce_sum", "exclusive_offset", "check_same_on_ranks"]


def distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialized (with more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wait_collective(work: Any, what: str, timeout: float | None) -> None:
    """Wait for an ``async_op=True`` collective; a failure or timeout raises ``RuntimeError`` naming ``what``."""
    try:
        if timeout is None:
            work.wait()
        else:
            work.wait(timeout=datetime.timedelta(seconds=timeout))
    except Exception as exc:  # a dead or stuck peer: name the step, keep the cause
        raise RuntimeError(
            f"{what}: a torch.distributed collective failed (rank {dist.get_rank()} of "
            f"{dist.get_world_size()}); a peer may have died or diverged: {exc}"
        ) from exc


def all_reduce_sum(t: torch.Tensor, what: str, timeout: float | None = None) -> torch.Tensor:
    """Sum ``t`` over all processes, in place; errors (dead peer, timeout) name ``what``."""
    wait_collective(dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True), what, timeout)
    return t


def exclusive_offset(n_local: int, device: torch.device, timeout: float | None = None) -> tuple[int, int]:
    """``(offset, total)``: samples held by lower ranks, and by all ranks."""
    if not distributed():
        return 0, n_local
    counts = torch.zeros(dist.get_world_size(), dtype=torch.int64, device=device)
    counts[dist.get_rank()] = n_local
    all_reduce_sum(counts, "sample counts", timeout)
    return int(counts[: dist.get_rank()].sum()), int(counts.sum())


def check_same_on_ranks(V: torch.Tensor, what: str, timeout: float | None = None) -> None:
    """Raise ``ValueError`` unless ``V`` is (up to rounding) the same on every process.

    Data-parallel products need identical input vectors on all ranks (draw them
    with :func:`specop.random.probes`, which is rank independent). The check
    reduces two checksums per column: one small collective.
    """
    col = V.sum(dim=0) + (V * V).sum(dim=0)
    both = torch.cat([col, -col]).to(torch.float64)
    wait_collective(dist.all_reduce(both, op=dist.ReduceOp.MAX, async_op=True), what, timeout)
    k = col.shape[0]
    spread = both[:k] + both[k:]  # max - min per column
    tol = 1e-6 * (both[:k].abs() + both[k:].abs() + 1.0)
    if bool((spread > tol).any()):
        raise ValueError(
            f"{what}: the input vectors differ between processes; in data-parallel use every "
            "rank must pass the same vectors (e.g. specop.random.probes with the same seed)"
        )
