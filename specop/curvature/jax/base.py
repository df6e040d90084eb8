"""The base class of the JAX curvature operators: everything but the per-batch product.

A curvature operator of a loss over ``N`` samples is the data mean
``C = (1/N) sum_b n_b C_b`` of batch products ``C_b`` (each the curvature of its
batch-mean loss). This class flattens the parameter pytree
(:func:`jax.flatten_util.ravel_pytree`), holds and checks the batches, shards them
over devices (a :class:`jax.sharding.NamedSharding` on a 1-D ``"data"`` mesh, so XLA
inserts the cross-device reduction; across processes of :func:`jax.distributed.initialize`
each process contributes its own batches, assembled with
:func:`jax.make_array_from_process_local_data`), jit-compiles the vmapped per-batch
product once, and provides :meth:`gradient`, :meth:`loss` and :meth:`unravel`. A subclass defines
only ``_batch_matmat(flat, batch, V, index)``: the batch-mean product with the
columns of ``V`` ``(P, k)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from specop import backends
from specop.operators.base import LinearOperator

__all__ = ["JaxCurvatureOperator"]


def _as_batches(data: Any, batch_size: int | None, params: Any = None) -> list[tuple[Any, ...]]:
    """``data`` as a list of jax array tuples sharing a leading (sample) axis.

    ``params`` (if not None) is checked with the data for float64 that x64 would truncate.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
    if isinstance(data, tuple) and data and all(hasattr(a, "shape") for a in data):
        batches = [data]
    elif isinstance(data, Iterable) and not hasattr(data, "shape"):
        batches = [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in data]
    else:
        raise TypeError("data: expected an (X, y) tuple of arrays or an iterable of batches, "
                        f"got {type(data).__name__}")
    if not batches:
        raise ValueError("data: no batches (empty data)")
    _warn_truncated_float64(params, batches)
    out = []
    for i, b in enumerate(batches):
        sizes = [np.shape(a)[0] if np.ndim(a) >= 1 else None for a in b]
        if None in sizes:
            raise ValueError(f"data: batch {i} has an array without a leading sample axis (shapes "
                             f"{[tuple(np.shape(a)) for a in b]})")
        if len(set(sizes)) != 1 or sizes[0] == 0:
            raise ValueError(f"data: batch {i} arrays disagree on (or have zero) samples: leading sizes {sizes}")
        if batch_size is None:
            out.append(tuple(jnp.asarray(a) for a in b))
        else:
            for lo in range(0, sizes[0], batch_size):
                out.append(tuple(jnp.asarray(a)[lo: lo + batch_size] for a in b))
    return out


def _warn_truncated_float64(params: Any, batches: list[tuple[Any, ...]]) -> None:
    """Warn when float64 inputs will silently compute in float32 (``jax_enable_x64`` off)."""
    if params is None or jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        return
    leaves = jax.tree_util.tree_leaves(params) + [a for b in batches for a in b]
    if any(str(getattr(a, "dtype", "")).endswith("float64") for a in leaves):
        warnings.warn("params/data: float64 arrays given but jax_enable_x64 is off, so JAX computes in "
                      "float32; call jax.config.update('jax_enable_x64', True) before creating arrays",
                      UserWarning, stacklevel=4)


def _put(a: Any, sharding: Any) -> Any:
    """``a`` placed with ``sharding``; across processes ``a`` is this process's local part."""
    if getattr(a, "sharding", None) == sharding:
        return a
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(a))


class JaxCurvatureOperator(LinearOperator):
    """A ``P x P`` curvature matrix of a JAX loss over a data set.

    Parameters
    ----------
    params : pytree
        Parameters at which the curvature is taken (dicts, Flax/Equinox trees, ...).
    data : (X, y, ...) tuple of arrays, or iterable of such tuples
        The data set; every array of a batch has the samples on axis 0.
    batch_size : int, optional
        Split a single ``(X, y)`` tuple into batches of this size.
    devices : sequence of jax devices, optional
        Shard every batch over these devices (a 1-D ``"data"`` mesh); the batch
        size must be divisible by their number.
    sharding : jax.sharding.NamedSharding, optional
        An explicit sharding for the batches instead of ``devices``. When it spans
        several processes (:func:`jax.distributed.initialize`), every process passes
        its own part of the data (same number of batches, equal local batch sizes).
    dtype : None, "float32" or "float64"
        Cast the parameters and the floating data; float64 needs ``jax_enable_x64``
        (a ``ValueError`` without it; float64 inputs without it warn, as JAX would
        silently compute in float32).
    """

    def __init__(self, params: Any, data: Any, *, batch_size: int | None = None,
                 devices: Sequence[Any] | None = None, sharding: Any = None, dtype: Any = None) -> None:
        self.batches = _as_batches(data, batch_size, params if dtype is None else None)
        flat, self._unravel = ravel_pytree(params)
        if dtype is not None:
            if str(dtype).endswith("float64") and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
                raise ValueError("dtype: float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) "
                                 "before creating arrays)")
            flat = flat.astype(jnp.dtype(str(dtype).rsplit(".", 1)[-1]))
            self.batches = [tuple(a.astype(flat.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in b)
                            for b in self.batches]
        xp = backends.namespace("jax")
        backends.check_floating(xp, flat.dtype, type(self).__name__)
        self.flat = flat
        if devices is not None and sharding is None:
            devices = list(devices)
            if not devices or len(set(devices)) != len(devices):
                raise ValueError(f"devices: expected distinct devices, got {devices}")
            mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        self.sharding = sharding
        if sharding is not None:
            count = len(sharding.addressable_devices)
            for i, b in enumerate(self.batches):
                if b[0].shape[0] % count:
                    raise ValueError(f"data: batch {i} has {b[0].shape[0]} samples, not divisible by the "
                                     f"{count} (local) devices of the sharding")
            self._replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            self.flat = _put(self.flat, self._replicated)
            self.batches = [tuple(_put(a, sharding) for a in b) for b in self.batches]
        self.num_samples = int(sum(b[0].shape[0] for b in self.batches))
        self._check_batch(self.flat, self.batches[0])
        self._mm = jax.jit(self._matmat_fn)
        self._grad = jax.jit(jax.value_and_grad(self._flat_loss))
        # sharded: the replicated sharding plays the device (vectors are replicated over the mesh)
        device = next(iter(self.flat.devices())) if sharding is None else self.flat.sharding
        P = int(flat.shape[0])
        super().__init__((P, P), self.flat.dtype, xp=xp, device=device, symmetric=True)

    # --------------------------------------------------------------- hooks
    def _flat_loss(self, flat: Any, batch: tuple) -> Any:
        raise NotImplementedError  # abstract: each operator defines its batch loss

    def _batch_matmat(self, flat: Any, batch: tuple, V: Any, index: Any) -> Any:
        raise NotImplementedError  # abstract: each operator defines its batch product

    def _check_batch(self, flat: Any, batch: tuple) -> None:
        shape = jax.eval_shape(self._flat_loss, flat, batch).shape
        if shape != ():
            raise ValueError(f"loss_fn must return a scalar (the batch mean), got shape {shape}")

    def _matmat_fn(self, flat: Any, batch: tuple, V: Any, index: Any) -> Any:
        return self._batch_matmat(flat, batch, V, index)

    # ------------------------------------------------------------ products
    def _matmat(self, V: Any) -> Any:
        if self.sharding is not None:
            V = _put(V, self._replicated)
        acc = None
        for i, batch in enumerate(self.batches):
            part = batch[0].shape[0] * self._mm(self.flat, batch, V, jnp.asarray(i))
            acc = part if acc is None else acc + part
        return acc / self.num_samples

    def _matvec(self, v: Any) -> Any:
        return self._matmat(v[:, None])[:, 0]

    @property
    def devices(self) -> set:
        """The devices the data live on."""
        return set().union(*(a.devices() for a in self.batches[0]))

    def gradient(self) -> Any:
        """Flat gradient of the mean loss over the whole data set."""
        return self._value_and_grad()[1]

    def loss(self) -> Any:
        """Mean loss over the whole data set (0-d array)."""
        return self._value_and_grad()[0]

    def _value_and_grad(self) -> tuple[Any, Any]:
        val, grad = 0.0, None
        for batch in self.batches:
            v, g = self._grad(self.flat, batch)
            n = batch[0].shape[0]
            val = val + n * v
            grad = n * g if grad is None else grad + n * g
        return val / self.num_samples, grad / self.num_samples

    def unravel(self, v: Any, *, stacked: bool = False) -> Any:
        """Flat vector(s) as parameter pytrees.

        Parameters
        ----------
        v : array of shape (P,) or (P, k)
            A flat vector, or ``k`` of them as columns (e.g. ``eigsh`` eigenvectors).
        stacked : bool
            For ``(P, k)``: one pytree whose leaves carry a trailing axis of size
            ``k`` (True), or a list of ``k`` pytrees (False, default).

        Returns
        -------
        pytree or list of pytrees
        """
        P = self.shape[0]
        shape = tuple(getattr(v, "shape", ()))
        if len(shape) not in (1, 2) or shape[0] != P:
            raise ValueError(f"unravel: expected an array of shape ({P},) or ({P}, k), got shape {shape}")
        v = jnp.asarray(v)
        if v.ndim == 1:
            return self._unravel(v)
        if stacked:
            return jax.vmap(self._unravel, in_axes=1, out_axes=-1)(v)
        return [self._unravel(v[:, j]) for j in range(v.shape[1])]
