"""The base class of the JAX curvature operators: everything but the per-batch product.

A curvature operator of a loss over ``N`` samples is the data mean
``C = (1/N) sum_b n_b C_b`` of batch products ``C_b`` (each the curvature of its
batch-mean loss). This class flattens the parameter pytree
(:func:`jax.flatten_util.ravel_pytree`), holds and checks the batches, shards them
over devices (a :class:`jax.sharding.NamedSharding` on a 1-D ``"data"`` mesh, so XLA
inserts the cross-device reduction), jit-compiles the vmapped per-batch product once,
and provides :meth:`gradient`, :meth:`loss` and :meth:`unravel`. A subclass defines
only ``_batch_matmat(flat, batch, V, index)``: the batch-mean product with the
columns of ``V`` ``(P, k)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from specop import backends
from specop.operators.base import LinearOperator

__all__ = ["JaxCurvatureOperator"]


def _as_batches(data: Any, batch_size: int | None) -> list[tuple[Any, ...]]:
    """``data`` as a list of array tuples sharing a leading (sample) axis."""
    if isinstance(data, tuple) and data and all(hasattr(a, "shape") for a in data):
        batches = [data]
    elif isinstance(data, Iterable) and not hasattr(data, "shape"):
        batches = [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in data]
    else:
        raise TypeError("data: expected an (X, y) tuple of arrays or an iterable of batches, "
                        f"got {type(data).__name__}")
    if not batches:
        raise ValueError("data: no batches (empty data)")
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
        An explicit sharding for the batches instead of ``devices``.
    dtype : None, "float32" or "float64"
        Cast the parameters; float64 needs ``jax_enable_x64``.
    """

    def __init__(self, params: Any, data: Any, *, batch_size: int | None = None,
                 devices: Sequence[Any] | None = None, sharding: Any = None, dtype: Any = None) -> None:
        flat, self._unravel = ravel_pytree(params)
        if dtype is not None:
            if str(dtype).endswith("float64") and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
                raise ValueError("dtype: float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) "
                                 "before creating arrays)")
            flat = flat.astype(jnp.dtype(str(dtype).rsplit(".", 1)[-1]))
        xp = backends.namespace("jax")
        backends.check_floating(xp, flat.dtype, type(self).__name__)
        self.flat = flat
        self.batches = _as_batches(data, batch_size)
        if devices is not None and sharding is None:
            mesh = jax.sharding.Mesh(np.asarray(list(devices)), ("data",))
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        self.sharding = sharding
        if sharding is not None:
            count = len(sharding.mesh.devices.ravel())
            for i, b in enumerate(self.batches):
                if b[0].shape[0] % count:
                    raise ValueError(f"data: batch {i} has {b[0].shape[0]} samples, not divisible by the "
                                     f"{count} devices of the sharding")
            replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            self.flat = jax.device_put(self.flat, replicated)
            self.batches = [tuple(jax.device_put(a, sharding) for a in b) for b in self.batches]
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
            V = jax.device_put(V, jax.sharding.NamedSharding(self.sharding.mesh, jax.sharding.PartitionSpec()))
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

    def unravel(self, v: Any) -> Any:
        """A flat vector as a parameter pytree; an ``(P, k)`` matrix as a list of ``k`` pytrees."""
        if getattr(v, "ndim", 1) == 2:
            return [self._unravel(v[:, j]) for j in range(v.shape[1])]
        if v.shape != (self.shape[0],):
            raise ValueError(f"unravel: expected a vector of shape ({self.shape[0]},), got {tuple(v.shape)}")
        return self._unravel(v)
