"""Precision and placement helpers of the JAX curvature operators.

* whether float64 is available (``jax_enable_x64``) and a warning when float64 inputs would
  silently compute in float32;
* casting the floating leaves of a parameter pytree;
* placing an array with a sharding (across processes from each process's local part) and a
  picklable description of a device-mesh sharding.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from specop.curvature.jax._params import is_none

__all__ = ["cast_params"]


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]


def _warn_truncated_float64(params: Any, batch: Any) -> None:
    """Warn when float64 inputs will silently compute in float32 (``jax_enable_x64`` off)."""
    if _x64():
        return
    leaves = jax.tree_util.tree_leaves(params) + jax.tree_util.tree_leaves(batch)
    if any(str(getattr(a, "dtype", "")).endswith("float64") for a in leaves):
        warnings.warn("params/data: float64 arrays given but jax_enable_x64 is off, so JAX computes in "
                      "float32; call jax.config.update('jax_enable_x64', True) before creating arrays",
                      UserWarning, stacklevel=5)


def _put(a: Any, sharding: Any) -> Any:
    """``a`` placed with ``sharding``; across processes ``a`` is this process's local part."""
    if getattr(a, "sharding", None) == sharding:
        return a
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(a))


def cast_params(params: Any, dtype: Any) -> Any:
    """``params`` with every floating array leaf cast to ``dtype`` (other leaves unchanged)."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)
        else a, params, is_leaf=is_none)


class _Mesh(NamedTuple):
    """A picklable description of a device mesh sharding (device ids, axis names, partition spec)."""

    ids: Any
    axes: tuple
    spec: Any

    @staticmethod
    def of(sharding: Any) -> _Mesh:
        ids = np.vectorize(lambda d: d.id)(sharding.mesh.devices)
        return _Mesh(ids, tuple(sharding.mesh.axis_names), sharding.spec)

    def build(self) -> Any:
        by_id = {d.id: d for d in jax.devices()}
        devices = np.vectorize(lambda i: by_id[int(i)], otypes=[object])(self.ids)
        return jax.sharding.NamedSharding(jax.sharding.Mesh(devices, self.axes), self.spec)
