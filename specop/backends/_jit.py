"""Compiled kernels: the vector arithmetic between two products, jit-compiled on JAX, plain elsewhere.

Eager JAX compiles every primitive anew for each new shape (30-150 ms each on a 2-core CPU) and
dispatches every primitive on its own (~100 us each): an iteration of a Krylov solver written as
twenty array expressions costs twenty compiles the first time an operator size is met and twenty
dispatches on every step. :func:`kernel` turns such a block of arithmetic into one program:

* on JAX, ``jax.jit`` of the function (compiled once per shapes and dtypes of its array
  arguments and per value of its static arguments, then cached for the process);
* on every other backend (numpy, torch, cupy, array-api-strict) the function itself, called
  plainly: the same expressions in the same order, so results are bit for bit those of the
  unwrapped code.

A kernel is a pure function ``fn(xp, *arrays_and_scalars, **static_flags)`` of arrays of one
backend; ``xp`` (the namespace) comes first and selects the path. Rules that keep JAX from
compiling again:

* Python ``int``/``float``/``bool`` arguments that change from call to call (a step size, an
  iteration count, a row index) are *traced*: they become 0-d arguments of the program, and a new
  value does not recompile. Only arguments named in ``static`` are compile-time constants: use
  them for flags and sizes fixed for a whole run (a preconditioner present or not, a block width).
* Shapes are compile-time constants too, so a kernel must see fixed shapes: the whole
  preallocated basis with a traced row count (rows not yet filled masked out, see
  :func:`row_mask`), never ``basis[:j]``. Where the fixed shape costs the host backends work
  (numpy computing with rows it could skip), the caller keeps the sliced path there: ask
  :func:`compiles_per_shape`.
* Inside a kernel the arrays are JAX tracers: no host reads (``float(x)``, ``to_numpy``), no
  Python branching on array values, no in-place writes (``assign``/``axpy`` fall back to their
  functional forms by themselves).

:func:`compile_count` reports how many XLA programs the process has compiled (0 without JAX), for
tests that check that compiles do not grow with the iteration count.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["kernel", "compiles_per_shape", "row_mask", "compile_count"]

_JAX_NAMESPACES = frozenset({"jax.numpy", "jax.experimental.array_api"})


def compiles_per_shape(xp: ModuleType) -> bool:
    """Whether namespace ``xp`` compiles a program per array shape (JAX): prefer fixed shapes there."""
    return getattr(xp, "__name__", "") in _JAX_NAMESPACES


def kernel(fn: F | None = None, *, static: tuple[str, ...] = ()) -> Any:
    """Decorator: ``fn(xp, ...)`` runs as one compiled program on JAX and plainly on other backends.

    Parameters
    ----------
    fn : callable
        A pure function of arrays (and Python scalars) of one backend whose first argument is
        that backend's namespace ``xp``; it may return any pytree (tuples, dicts) of arrays.
    static : tuple of str
        Names of arguments that are compile-time constants on JAX (flags, sizes fixed per
        run); every other argument is traced, so new values never recompile.

    Returns
    -------
    callable
        Same signature as ``fn``; ``.plain`` is ``fn`` itself.

    Examples
    --------
    >>> @kernel(static=("shifted",))
    ... def update(xp, x, p, alpha, shifted=False):
    ...     return x + alpha * p
    """
    if fn is None:
        return functools.partial(kernel, static=static)
    compiled: list[Any] = []
    lock = threading.Lock()

    @functools.wraps(fn)
    def call(xp: ModuleType, *args: Any, **kwargs: Any) -> Any:
        if getattr(xp, "__name__", "") not in _JAX_NAMESPACES:
            return fn(xp, *args, **kwargs)
        if not compiled:
            with lock:
                if not compiled:
                    import jax

                    compiled.append(jax.jit(fn, static_argnums=(0,), static_argnames=static))
        return compiled[0](xp, *args, **kwargs)

    call.plain = fn  # type: ignore[attr-defined]
    return call


def row_mask(xp: ModuleType, size: int, rows: Any, like: Any) -> Any:
    """Boolean vector ``arange(size) < rows`` on ``like``'s device (``rows`` may be traced)."""
    from specop import backends

    dev = backends.device_of(like)
    kw = {} if dev is None or compiles_per_shape(xp) else {"device": dev}
    return xp.arange(size, **kw) < rows


_compiles = [0]
_listening: list[bool] = []


def _listen() -> None:
    import jax

    def on_event(name: str, duration: float, **_: Any) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            _compiles[0] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)
    _listening.append(True)


def compile_count() -> int:
    """XLA programs compiled by this process since the first call of this function (0 without JAX).

    The first call starts the count (it registers a ``jax.monitoring`` listener); differences
    of later calls count the compiles in between.
    """
    if not _listening:
        try:
            _listen()
        except ImportError:
            return 0
    return _compiles[0]
