"""Data sets of ``(X, y)`` batches and the data-parallel reductions over them.

The operators are defined on the *mean* loss over all ``N`` samples. A batch of
``n_b`` samples contributes ``n_b`` times its batch-mean product, and the sum is
divided by ``N`` (so a short last batch, or shards of different sizes, get their
proper weight). With ``torch.distributed`` initialized, the weighted sums and
``N`` are summed over the processes (``all_reduce``), so every process gets the
result of one process holding the union of the shards.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Batches", "distributed", "all_reduce_sum", "exclusive_offset", "check_same_on_ranks"]


def distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialized (with more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _wait(work: Any, what: str, timeout: float | None) -> None:
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
    _wait(dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True), what, timeout)
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
    _wait(dist.all_reduce(both, op=dist.ReduceOp.MAX, async_op=True), what, timeout)
    k = col.shape[0]
    spread = both[:k] + both[k:]  # max - min per column
    tol = 1e-6 * (both[:k].abs() + both[k:].abs() + 1.0)
    if bool((spread > tol).any()):
        raise ValueError(
            f"{what}: the input vectors differ between processes; in data-parallel use every "
            "rank must pass the same vectors (e.g. specop.random.probes with the same seed)"
        )


class Batches:
    """A re-iterable view of ``data`` as ``(X, y)`` batches on the operator's device.

    Parameters
    ----------
    data : tuple of two tensors, or iterable of ``(X, y)`` batches
        One batch, or a re-iterable collection of batches (list, DataLoader).
    device : torch.device
        Where batches are moved (``X``, ``y`` may live elsewhere, e.g. a CPU loader).
    dtype : torch.dtype
        Floating inputs are cast to it (integer labels are left alone).
    """

    def __init__(self, data: Any, device: torch.device, dtype: torch.dtype) -> None:
        if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            self._batches: Iterable[Any] = [data]
        elif isinstance(data, (torch.Tensor, str, bytes)) or not isinstance(data, Iterable):
            raise TypeError(f"data: expected an (X, y) tuple of tensors or an iterable of (X, y) batches, "
                            f"got {type(data).__name__}")
        elif iter(data) is data:
            raise TypeError("data: got a one-shot iterator; the operator iterates the data once per product, "
                            "pass a re-iterable collection (list, tuple, DataLoader)")
        else:
            self._batches = data
        self.device, self.dtype = device, dtype

    def _convert(self, t: Any, i: int, what: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"data batch {i}: {what} must be a torch.Tensor, got {type(t).__name__}")
        t = t.to(self.device, non_blocking=True)
        return t.to(self.dtype) if t.is_floating_point() else t

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(i, X, y)``; ``ValueError`` for a malformed batch."""
        for i, batch in enumerate(self._batches):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(f"data batch {i}: expected an (X, y) pair, got {type(batch).__name__}")
            X, y = self._convert(batch[0], i, "X"), self._convert(batch[1], i, "y")
            if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
                raise ValueError(f"data batch {i}: X and y must have the same number of samples (first "
                                 f"dimension), got X of shape {tuple(X.shape)} and y of shape {tuple(y.shape)}")
            if X.shape[0] == 0:
                raise ValueError(f"data batch {i}: the batch is empty (X of shape {tuple(X.shape)})")
            yield i, X, y

    def count(self) -> int:
        """Number of samples, checking every batch on the way (one pass, no model call)."""
        n = sum(X.shape[0] for _, X, _ in self)
        if n == 0:
            raise ValueError("data: the data set is empty (no batches)")
        return n
