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
  (An ``int`` and a ``float`` in the same place are two programs: keep each argument's type.)
* The array arguments are pinned to the device of the first one, so committed arrays (made
  with ``device=``, or outputs of a kernel) and uncommitted ones share one program.
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
import inspect
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
    sig = inspect.signature(fn)
    names = list(sig.parameters)[1:]
    dynamic = [name for name in names if name not in static]
    compiled: dict[Any, Any] = {}
    lock = threading.Lock()

    @functools.wraps(fn)
    def call(xp: ModuleType, *args: Any, **kwargs: Any) -> Any:
        if getattr(xp, "__name__", "") not in _JAX_NAMESPACES:
            return fn(xp, *args, **kwargs)
        if not kwargs and len(args) == len(names) and not static:  # all positional: no binding
            flags, dyn = (), list(args)
        else:
            bound = sig.bind(xp, *args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            flags = tuple(values[name] for name in static)
            dyn = [values[name] for name in dynamic]
        device = _device(dyn)
        if device is _TRACED:  # called inside another kernel: part of its program
            return fn(xp, *args, **kwargs)
        key = (id(xp), flags, device)
        prog = compiled.get(key)
        if prog is None:
            with lock:
                prog = compiled.get(key)
                if prog is None:
                    prog = compiled[key] = _jit(fn, xp, dict(zip(static, flags, strict=True)), dynamic, device)
        return prog(*dyn)

    call.plain = fn  # type: ignore[attr-defined]
    return call


_TRACED = object()


def _device(args: list[Any]) -> Any:
    """The one device of the first JAX array among ``args`` and the values of their dicts, tuples
    and lists (None: none, or an array on several; ``_TRACED`` when one is a tracer of an enclosing
    program; arguments nested deeper are not looked at)."""
    import jax

    leaves = [x for a in args for x in (a.values() if isinstance(a, dict) else
                                        a if isinstance(a, (tuple, list)) else (a,))]
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return _TRACED
    for leaf in leaves:
        if isinstance(leaf, jax.Array):
            devices = leaf.devices()
            return next(iter(devices)) if len(devices) == 1 else None
    return None


def _jit(fn: Callable[..., Any], xp: ModuleType, flags: dict[str, Any], dynamic: list[str], device: Any) -> Any:
    """``jax.jit`` of ``fn`` with ``xp`` and the static flags bound, every other argument positional.

    The arguments are pinned to ``device`` (``in_shardings``), so that arrays committed to it
    (made with ``device=``, or outputs of an earlier program) and uncommitted ones (made
    without) share one compiled program instead of two.
    """
    import jax

    def program(*dyn: Any) -> Any:
        return fn(xp, **flags, **dict(zip(dynamic, dyn, strict=True)))

    program.__name__ = getattr(fn, "__name__", "kernel")
    if device is None:
        return jax.jit(program)
    return jax.jit(program, in_shardings=jax.sharding.SingleDeviceSharding(device))


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

    def on_event(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
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
