"""The one seam between specop and the array libraries.

Everything that depends on *which* array library holds the data lives here:
namespace lookup (via :mod:`array_api_compat`), device and dtype helpers, host
transfer, batched application of a function over columns (``vmap`` where the
library has one), in-place column writes, synchronisation of accelerators, and compiled
kernels (:func:`kernel`: ``jax.jit`` on JAX, a plain call elsewhere; see :mod:`specop.backends._jit`).
The rest of specop asks these helpers and never tests for a library by name.

Supported: numpy, torch (CPU and CUDA), jax, cupy and array-api-strict. A library
that is not installed is simply absent: nothing here imports it at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as aac
import numpy as np

from specop.backends._inplace import axpy, scale, vdot, workspace, xpay
from specop.backends._jit import compile_count, compiles_per_shape, kernel, row_mask
from specop.backends._threads import host_blas_single_thread as host_blas_single_thread

__all__ = [
    "BACKENDS",
    "available_backends",
    "backend_name",
    "namespace",
    "namespace_of",
    "stack_to_numpy",
    "device_of",
    "device_state",
    "restore_device",
    "same_device",
    "check_floating",
    "float_dtype",
    "default_float",
    "promote_dtype",
    "dtype_name",
    "to_numpy",
    "from_numpy",
    "sync",
    "is_host",
    "batched_apply",
    "assign",
    "axpy",
    "xpay",
    "workspace",
    "vdot",
    "scale",
    "astype",
    "contiguous",
    "is_array",
    "eye",
    "kernel",
    "compiles_per_shape",
    "row_mask",
    "compile_count",
]

#: Backend names in the order tests list them.
BACKENDS = ("numpy", "torch", "jax", "array_api_strict", "cupy")

_MODULES = {
    "numpy": "numpy",
    "torch": "torch",
    "jax": "jax.numpy",
    "array_api_strict": "array_api_strict",
    "cupy": "cupy",
}


def available_backends() -> list[str]:
    """Names of the backends that can be imported here (cupy only with a GPU)."""
    names = []
    for name in BACKENDS:
        try:
            namespace(name)
        except Exception:  # not installed, or no device for it
            continue
        names.append(name)
    return names


def namespace(name: str) -> ModuleType:
    """Array-API namespace of backend ``name`` (imports the library on demand)."""
    if name not in _MODULES:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    mod = importlib.import_module(_MODULES[name])
    if name == "cupy":
        mod.cuda.runtime.getDeviceCount()  # raises without a GPU
    if name == "jax":
        return mod
    if name == "array_api_strict":
        return mod
    return aac.array_namespace(mod.asarray([0.0]))


def is_array(x: Any) -> bool:
    """True for an array of any supported backend (not a Python scalar or list)."""
    return aac.is_array_api_obj(x) and not isinstance(x, (int, float, complex, bool))


def namespace_of(*arrays: Any) -> ModuleType:
    """The common array-API namespace of ``arrays``.

    Raises
    ------
    TypeError
        When the arrays come from two different backends (both are named).
    """
    names = {backend_name(a) for a in arrays}
    if len(names) > 1:
        raise TypeError(f"arrays of two backends were mixed: {sorted(names)}")
    return aac.array_namespace(*arrays)


def backend_name(x: Any) -> str:
    """Backend name of an array or of an array namespace."""
    checks = (
        ("numpy", aac.is_numpy_array, aac.is_numpy_namespace),
        ("torch", aac.is_torch_array, aac.is_torch_namespace),
        ("jax", aac.is_jax_array, aac.is_jax_namespace),
        ("cupy", aac.is_cupy_array, aac.is_cupy_namespace),
        ("array_api_strict", None, aac.is_array_api_strict_namespace),
    )
    is_module = isinstance(x, ModuleType)
    for name, is_arr, is_ns in checks:
        if is_module and is_ns(x):
            return name
        if not is_module and is_arr is not None and is_arr(x):
            return name
    if not is_module and aac.is_array_api_strict_namespace(aac.array_namespace(x)):
        return "array_api_strict"
    raise TypeError(f"expected an array of {BACKENDS}, got {type(x).__name__}")


def device_of(x: Any) -> Any:
    """Device of array ``x`` (``None`` for numpy)."""
    if aac.is_numpy_array(x):
        return None
    return aac.device(x)


def device_state(xp: ModuleType, device: Any) -> Any:
    """A picklable stand-in for ``device`` (a JAX device is not picklable: its platform and id)."""
    if backend_name(xp) == "jax" and device is not None:
        if hasattr(device, "platform") and hasattr(device, "id"):
            return ("jax-device", str(device.platform), int(device.id))
        return ("jax-device", None, None)  # a sharding: the arrays decide where they live after a reload
    return device


def restore_device(xp: ModuleType, state: Any) -> Any:
    """The device that :func:`device_state` stood in for, on this machine.

    A JAX device is looked up by platform and id; where this machine has no such device the
    default device is used (where JAX puts the reloaded arrays too).
    """
    if isinstance(state, tuple) and len(state) == 3 and state[0] == "jax-device":
        import jax

        _, platform, ident = state
        for dev in jax.devices():
            if platform is not None and dev.platform == platform and dev.id == ident:
                return dev
        return device_of(xp.empty(0))
    return state


def same_device(a: Any, b: Any) -> bool:
    """Whether two devices (as given by :func:`device_of`) can be mixed."""
    if a is None or b is None:
        return a is b
    if type(a) is not type(b):  # e.g. a jax Device and a jax Sharding
        return True
    return bool(a == b)


def dtype_name(dtype: Any) -> str:
    """Short name of a dtype of any backend: ``'float32'``, ``'int64'``, ..."""
    text = str(dtype)
    return text.rsplit(".", 1)[-1].replace("'>", "").replace("<class '", "")


def check_floating(xp: ModuleType, dtype: Any, what: str) -> None:
    """Raise ``TypeError`` unless ``dtype`` is float32 or float64."""
    if dtype not in (xp.float32, xp.float64):
        raise TypeError(f"{what}: expected dtype float32 or float64, got {dtype_name(dtype)}")


def float_dtype(xp: ModuleType, name: str) -> Any:
    """The ``'float32'`` / ``'float64'`` dtype object of namespace ``xp``."""
    if name not in ("float32", "float64"):
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {name!r}")
    return getattr(xp, name)


def default_float(xp: ModuleType) -> Any:
    """float64, or float32 for JAX without ``jax_enable_x64``."""
    if backend_name(xp) == "jax":
        import jax

        if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
            return xp.float32
    return xp.float64


def promote_dtype(xp: ModuleType, dtype: Any, name: str = "float64") -> Any:
    """The recurrence dtype: ``name`` if the backend can use it, else ``dtype``.

    JAX without ``jax_enable_x64`` cannot hold float64; there the operator's own
    dtype is returned and the caller keeps float32 accuracy.
    """
    wanted = float_dtype(xp, name)
    if name == "float64" and default_float(xp) != xp.float64:
        return dtype
    return wanted


def to_numpy(x: Any) -> np.ndarray:
    """Copy (or view) array ``x`` as a numpy array on the host."""
    if type(x) is np.ndarray or aac.is_numpy_array(x):
        return x
    if aac.is_torch_array(x):
        return x.detach().cpu().numpy()
    if aac.is_cupy_array(x):
        return x.get()
    if aac.is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)


def stack_to_numpy(xs: list[Any], axis: int = 0) -> np.ndarray:
    """``to_numpy(stack(xs, axis))`` of same-shaped arrays of one backend, in one host read.

    On JAX the arrays come over together (``jax.device_get``) and are stacked on the host: a stack
    on the device would compile one program per length of ``xs``. Elsewhere they are stacked on
    their device first (one transfer).
    """
    if xs and aac.is_jax_array(xs[0]):
        import jax

        return np.stack(jax.device_get(list(xs)), axis=axis)
    return to_numpy(namespace_of(xs[0]).stack(xs, axis=axis))


def from_numpy(a: np.ndarray, xp: ModuleType, device: Any = None, dtype: Any = None) -> Any:
    """Array of namespace ``xp`` on ``device`` holding the values of ``a``."""
    a = np.asarray(a, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)
    if backend_name(xp) == "numpy":
        return a if dtype is None else a.astype(dtype, copy=False)
    if backend_name(xp) == "jax":  # a transfer, not a program (jnp.asarray compiles one per shape and dtype)
        import jax

        return jax.device_put(np.array(a, dtype=dtype), device)  # a copy: device_put may alias host memory
    kw = {} if device is None else {"device": device}
    return xp.asarray(a, dtype=dtype, **kw)


def eye(xp: ModuleType, n: int, dtype: Any, device: Any) -> Any:
    """Identity matrix of namespace ``xp`` on ``device``."""
    kw = {} if device is None else {"device": device}
    return xp.eye(n, dtype=dtype, **kw)


def is_host(xp: ModuleType, device: Any) -> bool:
    """Whether arrays on ``device`` live in host memory (reading a scalar is free)."""
    name = backend_name(xp)
    if name in ("numpy", "array_api_strict"):
        return True
    if name == "torch":
        return device.type == "cpu"
    if name == "jax":
        return getattr(device, "platform", "cpu") == "cpu"
    return False


def sync(x: Any) -> None:
    """Block until the computation producing ``x`` has finished (for timing)."""
    if aac.is_torch_array(x) and x.is_cuda:
        import torch

        torch.cuda.synchronize(x.device)
    elif aac.is_jax_array(x):
        x.block_until_ready()
    elif aac.is_cupy_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def batched_apply(fn: Callable[[Any], Any], V: Any, xp: ModuleType,
                  check: Callable[[Any], Any] | None = None) -> Any:
    """Apply a vector function ``fn`` to every column of ``V`` (n, k) -> (m, k).

    Uses ``torch.func.vmap`` / ``jax.vmap`` where available so that the columns go
    through one batched call; a function that cannot be vmapped (it calls
    ``.item()``, numpy, ...) falls back to a loop over the columns. ``check``, if given,
    sees each column's result in the loop before the results are stacked (stacking
    would convert, or fail obscurely on, a result of the wrong kind).
    """
    name = backend_name(xp)
    if name in ("torch", "jax") and V.shape[1] > 1:
        try:
            if name == "torch":
                import torch.func

                return torch.func.vmap(fn, in_dims=1, out_dims=1)(V)
            import jax

            return jax.vmap(fn, in_axes=1, out_axes=1)(V)
        except Exception:  # not vmappable: the loop below gives the same result
            pass
    cols = [fn(V[:, j]) for j in range(V.shape[1])]
    if check is not None:
        cols = [check(c) for c in cols]
    return xp.stack(cols, axis=1)


def contiguous(x: Any) -> Any:
    """``x`` with a row-major (C-contiguous) memory layout, on its device.

    Two arrays with equal values but different layouts (a transposed view, and its copy
    reloaded from a file) may take different BLAS paths and round differently; algorithms
    that must be bit-reproducible from stored arrays make their operands contiguous.
    """
    if aac.is_numpy_array(x):
        return np.ascontiguousarray(x)
    if aac.is_torch_array(x):
        return x.contiguous()
    if aac.is_cupy_array(x):
        import cupy

        return cupy.ascontiguousarray(x)
    if aac.is_jax_array(x):
        return x  # no user-visible strides: results are materialised row-major
    return from_numpy(np.ascontiguousarray(to_numpy(x)), namespace_of(x), device_of(x), x.dtype)


def astype(x: Any, dtype: Any, xp: ModuleType) -> Any:
    """``x`` as ``dtype``, without a copy when it already has it."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def assign(M: Any, index: Any, v: Any) -> Any:
    """``M[index] = v``, in place where the backend allows (a new array for jax); returns ``M``.

    An integer ``index`` selects a row (``M[index, ...]``).
    """
    if isinstance(index, int):
        index = (index, Ellipsis)
    if aac.is_writeable_array(M):
        M[index] = v
        return M
    return M.at[index].set(v)
