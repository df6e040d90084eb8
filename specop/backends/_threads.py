"""Single-threaded host BLAS around the small LAPACK work of the algorithms (threadpoolctl)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["host_blas_single_thread"]


@contextlib.contextmanager
def host_blas_single_thread(xp: ModuleType, include_host: bool = False) -> Iterator[None]:
    """One thread for numpy's and scipy's BLAS while an algorithm drives a non-numpy operator.

    The algorithms do small host-side LAPACK work between products (``eigh`` of a
    tridiagonal or of a Ritz matrix). OpenBLAS threads keep spinning for a while after
    such a call and, on a machine with few cores, take them from the intra-op threads of
    the torch/JAX operator that runs next: a 3 ms Hessian product measured 8 ms inside
    ``eigsh`` on 2 cores. Numpy operators keep their BLAS threads (their products need
    them, and they share the one pool) unless ``include_host``: loops of many small BLAS calls
    (CGS2 against a few dozen rows, small SVDs) are faster on one thread there too (a 40 x 40
    by 40 x 2000 product: 30 ms threaded, 0.3 ms on one thread on 2 shared cores), at the price
    of a large dense numpy product running single-threaded. Uses ``threadpoolctl``; a no-op without it.
    """
    from specop.backends import backend_name

    host = backend_name(xp) in ("numpy", "array_api_strict")
    controller = _blas_controller() if (include_host or not host) else None
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded thread pools, built once (it scans the loaded libraries: ~1 ms)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    return ThreadpoolController()
