r"""The base class of the JAX curvature operators: everything but the per-batch product.

The operator is the curvature of the *data-set* loss (:mod:`specop.curvature._core`)

.. math::

    L(\theta) = \frac{\sum_b S_b(\theta)}{\sum_b Z_b},

with ``S_b`` and ``Z_b`` the sum and the normalizer that batch ``b``'s loss reports
(``L = sum_b S_b`` for a summed loss), so it never depends on the batching. A subclass
defines two hooks, each a pure function of the coordinates and of one batch passed as a
value (:class:`~specop.curvature.jax._batches.Batch`): ``_batch_loss(theta, batch)``
(``S_b`` and ``Z_b``) and ``_batch_matmat(theta, batch, V, aux)`` (the curvature of ``S_b``
times the columns of ``V``; ``aux`` is what the optional ``_batch_aux(theta, batch)``
returned, compiled on its own). This class

* splits the parameter pytree into coordinates and fixed leaves
  (:mod:`~specop.curvature.jax._params`) and ravels the coordinates
  (:func:`jax.flatten_util.ravel_pytree` order);
* reads the data once at construction (a *census*: the normalizers ``Z_b``, the sample
  counts and the global offset of every batch; labels checked), then once per product,
  batch by batch: an iterable is streamed, never stored on the device;
* places batches with explicit transfers only (a product runs under
  ``jax.transfer_guard("disallow")`` when the data are already on the device), shards
  them over devices when asked (a :class:`jax.sharding.NamedSharding` on a 1-D ``"data"``
  mesh; across processes each passes its own part, assembled with
  :func:`jax.make_array_from_process_local_data`);
* jit-compiles the per-batch functions once per batch shape, accumulates on the device
  and divides by ``sum_b Z_b``;
* traces: ``matvec``/``matmat`` accept tracers (inside ``jax.jit``, ``jax.vmap``,
  ``jax.scipy.sparse.linalg.cg``), :meth:`pure_matvec` is a pure function of the vector
  and (optionally) the parameters, :meth:`matvec_tree` maps parameter pytrees;
* pickles by its constructor arguments (compiled functions and devices are rebuilt).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from specop import backends
from specop.curvature import _core
from specop.curvature.jax import _batches
from specop.curvature.jax._batches import Batch
from specop.curvature.jax._params import Layout, is_none, split_params
from specop.operators.base import LinearOperator

__all__ = ["JaxCurvatureOperator", "Theta"]


class Theta(NamedTuple):
    """The point at which the curvature is taken: flat coordinates and the fixed leaves."""

    flat: Any
    fixed: Any


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


def _cast_params(params: Any, dtype: Any) -> Any:
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


class JaxCurvatureOperator(LinearOperator):
    """A ``P x P`` curvature matrix of a JAX loss over a data set.

    Parameters
    ----------
    params : pytree
        The point at which the curvature is taken: a dict, an ``eqx.Module``, an
        ``nnx.State``, Flax linen variables (with ``trainable=``). Its trainable leaves
        are the ``P`` coordinates; the others stay fixed (see ``trainable``).
    data : batch or re-iterable of batches
        A batch is any pytree of arrays (``(X, y)``, ``(X, y, mask)``, a dict); see
        :mod:`specop.curvature.jax._batches`. An iterable is read batch by batch once
        per product (every pass must yield the same batches in the same order).
    trainable : None, callable or pytree prefix of bools, optional
        Which floating leaves are coordinates (default: all but non-``Param`` Flax nnx
        variables); integer, boolean and key leaves never are. See
        :mod:`specop.curvature.jax._params`.
    batch_size : int, optional
        Cut every batch along axis 0 into batches of this size.
    num_batches : int, optional
        Use the first ``num_batches`` batches of every pass (required for an infinite
        iterable).
    devices : sequence of jax devices, optional
        Shard every batch over these devices (a 1-D ``"data"`` mesh); the batch
        size must be divisible by their number.
    sharding : jax.sharding.NamedSharding, optional
        An explicit sharding for the batches instead of ``devices``. When it spans
        several processes (:func:`jax.distributed.initialize`), every process passes
        its own part of the data (same number of batches, equal local batch sizes).
    dtype : None, "float32" or "float64"
        Cast the floating parameters and data; float64 needs ``jax_enable_x64``
        (a ``ValueError`` without it; float64 inputs without it warn, as JAX would
        silently compute in float32; under x64 data of another float dtype than the
        parameters warn).

    Attributes
    ----------
    flat : array (P,)
        The coordinates.
    normalizer : float or None
        ``sum_b Z_b`` (``None`` for a summed loss).
    num_samples : int
        Samples over all batches (axis 0 of the model outputs, or of the batch arrays).
    trainable_paths, fixed_paths : list of str
        Key paths of the coordinate leaves and of the fixed ones.
    """

    _init: tuple[tuple, dict]

    def __init__(self, params: Any, data: Any, *, trainable: Any = None, batch_size: int | None = None,
                 num_batches: int | None = None, devices: Sequence[Any] | None = None, sharding: Any = None,
                 dtype: Any = None) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
        self._batch_size, self._dtype = batch_size, None
        if dtype is not None:
            name = str(dtype).rsplit(".", 1)[-1].replace("'>", "")
            if name not in ("float32", "float64"):
                raise ValueError(f"dtype: expected None, 'float32' or 'float64', got {dtype!r}")
            if name == "float64" and not _x64():
                raise ValueError("dtype: float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) "
                                 "before creating arrays)")
            self._dtype = jnp.dtype(name)
            params = _cast_params(params, self._dtype)
        self._layout, flat, fixed = split_params(params, trainable)
        xp = backends.namespace("jax")
        backends.check_floating(xp, flat.dtype, type(self).__name__)
        self._setup_devices(flat, devices, sharding)
        flat = self._place_replicated(flat)
        self._theta = Theta(flat, [self._place_replicated(a) for a in fixed])
        self.flat = flat
        if _batches.is_batch(data):
            _warn_truncated_float64(params if dtype is None else None, data if dtype is None else None)
            stored = [self._place(b) for b in self._split(iter([data]))]
            self._passes: Callable[[], Iterator[Any]] = lambda: iter(stored)
            self._placed = True
        else:
            self._passes = _core.iterate(data, num_batches, _batches.is_batch)
            self._placed = False
        self._build()
        self._census(params if dtype is None else None)
        device = next(iter(self.flat.devices())) if self.sharding is None else self.flat.sharding
        P = int(flat.shape[0])
        super().__init__((P, P), flat.dtype, xp=xp, device=device, symmetric=True)

    # ----------------------------------------------------------------- hooks
    def _batch_loss(self, theta: Theta, batch: Batch) -> _core.BatchLoss:
        raise NotImplementedError  # abstract: each operator defines its batch loss

    def _batch_matmat(self, theta: Theta, batch: Batch, V: Any, aux: Any) -> Any:
        raise NotImplementedError  # abstract: each operator defines its batch product

    def _batch_aux(self, theta: Theta, batch: Batch) -> Any:
        """What a product needs of a batch besides ``V`` (e.g. sampled scores), compiled apart from it.

        Its own jit: a costly part that does not depend on ``V`` (random draws) compiles
        once per batch shape instead of once per column count. Default: nothing.
        """
        return None

    def _samples(self, theta: Theta, data: Any) -> int:
        """Samples of a batch (static): the common leading size of its arrays, else 0."""
        try:
            return _batches.leading_size(data, "data")
        except ValueError:
            return 0

    def _invalid(self, theta: Theta, data: Any) -> Any:
        """Count of invalid targets in a batch (traced); 0 unless a loss checks its labels."""
        return jnp.zeros((), jnp.int32)

    def params(self, theta: Theta) -> Any:
        """The parameter pytree at ``theta`` (coordinates and fixed leaves combined)."""
        return self._layout.combine(theta.flat, theta.fixed)

    # --------------------------------------------------------- construction
    def _setup_devices(self, flat: Any, devices: Sequence[Any] | None, sharding: Any) -> None:
        if devices is not None and sharding is None:
            devices = list(devices)
            if not devices or len(set(devices)) != len(devices):
                raise ValueError(f"devices: expected distinct devices, got {devices}")
            mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        self.sharding = sharding
        if sharding is None:
            self._device = next(iter(flat.devices()))
            self._replicated = None
        else:
            self._replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())

    def _place_replicated(self, a: Any) -> Any:
        if self.sharding is None:
            return jax.device_put(a, self._device)
        return _put(a, self._replicated)

    def _place(self, batch: Any) -> Any:
        sharding = self.sharding
        if sharding is None:
            return _batches.place(batch, lambda a: jax.device_put(a, self._device), self._dtype)
        count = len(sharding.addressable_devices)
        n = _batches.leading_size(batch, "data")
        if n % count:
            raise ValueError(f"data: a batch has {n} samples, not divisible by the {count} (local) devices "
                             "of the sharding")
        return _batches.place(batch, lambda a: _put(a, sharding), self._dtype)

    def _split(self, batches: Iterator[Any]) -> Iterator[Any]:
        for b in batches:
            if self._batch_size is None:
                yield b
            else:
                yield from _batches.split_batch(b, self._batch_size)

    def _build(self) -> None:
        """The jit-compiled per-batch functions (rebuilt after unpickling)."""
        def census(theta: Theta, batch: Batch) -> tuple[Any, Any, Any]:
            count = self._samples(theta, batch.data)  # first: it checks the outputs' sample axis
            b = self._batch_loss(theta, batch)
            return b.normalizer, self._invalid(theta, batch.data), jnp.zeros((count,), jnp.int8)

        def value_and_grad(theta: Theta, batch: Batch) -> tuple[Any, Any]:
            total = lambda flat: self._batch_loss(Theta(flat, theta.fixed), batch).total  # noqa: E731
            return jax.value_and_grad(total)(theta.flat)

        self._jit_census = jax.jit(census)
        self._jit_vg = jax.jit(value_and_grad)
        self._jit_mm = jax.jit(self._batch_matmat)
        self._jit_aux = jax.jit(self._batch_aux)
        self._has_aux = type(self)._batch_aux is not JaxCurvatureOperator._batch_aux

    def _census(self, params: Any) -> None:
        """One pass at construction: ``sum_b Z_b``, sample counts and offsets, labels, dtypes."""
        acc, counts, zero = _core.Accumulator(), [], self._place_replicated(np.zeros((), np.int32))
        for i, raw in enumerate(self._split(self._passes())):
            if i == 0 and not self._placed:
                _warn_truncated_float64(params, raw)
            if isinstance(raw, tuple):  # the (X, y, ...) convention: samples on axis 0 of every array
                _batches.leading_size(raw, f"data: batch {i}")
            data = raw if self._placed else self._place(raw)
            if i == 0:
                self._warn_mixed(data)
            norm, invalid, marker = self._jit_census(self._theta, Batch(data, zero))
            if int(invalid):
                raise ValueError(f"targets: batch {i} has {int(invalid)} labels outside [0, classes) that are not "
                                 "the ignore_index")
            counts.append(int(marker.shape[0]))
            acc.add(counts[-1], None if norm is None else float(norm))
        acc.result()  # empty data, a non-positive sum of normalizers or a mix of kinds: a clear error
        self.normalizer = acc.normalizer
        self.num_samples = int(sum(counts))
        self._offsets = [self._place_replicated(np.asarray(o, np.int32)) for o in _core.sample_offsets(counts)]
        dtype = self._theta.flat.dtype
        self._Z = None if acc.normalizer is None else self._place_replicated(np.asarray(acc.normalizer, dtype))

    def _warn_mixed(self, data: Any) -> None:
        if not _x64() or self._dtype is not None:
            return
        want = str(self._theta.flat.dtype)
        other = sorted(_batches.float_dtypes(data) - {want})
        if other:
            warnings.warn(f"data: floating arrays of dtype {other} but the parameters are {want}; JAX promotes "
                          "mixed precision silently (pass dtype='float32' or 'float64' to cast both)",
                          UserWarning, stacklevel=5)

    # ------------------------------------------------------------- passes
    def _pass(self) -> Iterator[Batch]:
        """The batches of one pass, placed, each with its global offset."""
        count = 0
        for i, raw in enumerate(self._split(self._passes())):
            if i >= len(self._offsets):
                raise ValueError(f"data: a pass yielded more than the {len(self._offsets)} batches of the first pass")
            count += 1
            yield Batch(raw if self._placed else self._place(raw), self._offsets[i])
        if count != len(self._offsets):
            raise ValueError(f"data: a pass yielded {count} batches, the first pass {len(self._offsets)}")

    @property
    def batches(self) -> list[Any]:
        """The batches of one pass, as placed on the devices (for inspection; streams the data once)."""
        return [b.data for b in self._pass()]

    @property
    def devices(self) -> set:
        """The devices the data live on."""
        first = next(self._pass()).data
        return set().union(*(a.devices() for a in jax.tree_util.tree_leaves(first)))

    @property
    def trainable_paths(self) -> list[str]:
        return self._layout.trainable_paths

    @property
    def fixed_paths(self) -> list[str]:
        return self._layout.fixed_paths

    # ------------------------------------------------------------ products
    def _apply(self, theta: Theta, V: Any) -> Any:
        """``sum_b (d^2 S_b) V / sum_b Z_b`` on the device (no implicit transfer)."""
        acc = None
        for batch in self._pass():
            part = self._jit_mm(theta, batch, V, self._jit_aux(theta, batch) if self._has_aux else None)
            acc = part if acc is None else acc + part
        return acc if self._Z is None else acc / self._Z

    def _prepare(self, V: Any) -> Any:
        return V if self.sharding is None or isinstance(V, jax.core.Tracer) else _put(V, self._replicated)

    def _matmat(self, V: Any) -> Any:
        return self._apply(self._theta, self._prepare(V))

    def _matvec(self, v: Any) -> Any:
        return self._apply(self._theta, self._prepare(v).reshape(-1, 1)).reshape(-1)

    def _traced(self, x: Any, ndim: int, what: str) -> Any:
        P = self.shape[0]
        if x.ndim != ndim or x.shape[0] != P:
            want = f"({P},)" if ndim == 1 else f"({P}, k)"
            raise ValueError(f"{what}: operator of shape {self.shape} expects input of shape {want}, "
                             f"got {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{what}: expected dtype float32 or float64, got {x.dtype}")
        return x.astype(self.dtype)

    def matvec(self, v: Any) -> Any:
        """``A @ v``; ``v`` may be a tracer (inside ``jax.jit``, ``jax.vmap``, ``jax.lax`` loops)."""
        if isinstance(v, jax.core.Tracer):
            return self._matvec(self._traced(v, 1, "matvec"))
        return super().matvec(v)

    def matmat(self, V: Any) -> Any:
        """``A @ V`` for ``V`` of shape ``(P, k)``; ``V`` may be a tracer."""
        if isinstance(V, jax.core.Tracer):
            return self._matmat(self._traced(V, 2, "matmat"))
        return super().matmat(V)

    def pure_matvec(self, v: Any, params: Any = None) -> Any:
        """``A(params) @ v`` as a pure function, for ``jax.jit``, ``jax.vmap``, ``jax.grad`` and matfree.

        Parameters
        ----------
        v : array (P,)
            A flat vector (``jax.scipy.sparse.linalg.cg(H.pure_matvec, b)`` works).
        params : None, array (P,) or pytree
            The point: the operator's own (None), flat coordinates, or a params-shaped
            pytree (its fixed leaves are used too). The data and ``sum_b Z_b`` are the
            operator's; under ``jax.jit`` the batches become constants of the program.
        """
        v = self._traced(jnp.asarray(v), 1, "pure_matvec")
        return self._apply(self._theta_of(params), v.reshape(-1, 1)).reshape(-1)

    def _theta_of(self, params: Any) -> Theta:
        if params is None:
            return self._theta
        if isinstance(params, (jax.Array, np.ndarray)) and np.ndim(params) == 1:
            return Theta(self._traced(jnp.asarray(params), 1, "params"), self._theta.fixed)
        return Theta(self._layout.ravel(params, "params"), self._layout.fixed_of(params, "params"))

    def matvec_tree(self, tree: Any) -> Any:
        """``A @ tree`` for a params-shaped pytree (fixed leaves ignored; ``None`` there in the result)."""
        return self.unravel(self.matvec(self.ravel(tree)))

    def ravel(self, tree: Any) -> Any:
        """The flat vector (P,) of the coordinate leaves of a params-shaped pytree."""
        return self._layout.ravel(tree)

    # ---------------------------------------------------- loss and gradient
    def gradient(self) -> Any:
        """Flat gradient of the data-set loss ``L`` (``sum_b grad S_b / sum_b Z_b``)."""
        return self._value_and_grad()[1]

    def loss(self) -> Any:
        """The data-set loss ``L = sum_b S_b / sum_b Z_b`` (0-d array)."""
        return self._value_and_grad()[0]

    def _value_and_grad(self) -> tuple[Any, Any]:
        val = grad = None
        for batch in self._pass():
            s, g = self._jit_vg(self._theta, batch)
            val, grad = (s, g) if val is None else (val + s, grad + g)
        if self._Z is None:
            return val, grad
        return val / self._Z, grad / self._Z

    def unravel(self, v: Any, *, stacked: bool = False) -> Any:
        """Flat vector(s) as parameter pytrees (``None`` at the fixed leaves).

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
            return self._layout.unravel(v)
        if stacked:
            return jax.vmap(self._layout.unravel, in_axes=1, out_axes=-1)(v)
        return [self._layout.unravel(v[:, j]) for j in range(v.shape[1])]

    # ------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        args, kwargs = self._init
        kwargs = dict(kwargs)
        if kwargs.get("devices") is not None:
            kwargs["devices"] = [("device", d.id) for d in kwargs["devices"]]
        if kwargs.get("sharding") is not None:
            kwargs["sharding"] = _Mesh.of(kwargs["sharding"])
        return {"init": (args, kwargs)}

    def __setstate__(self, state: dict) -> None:
        args, kwargs = state["init"]
        if kwargs.get("devices") is not None:
            by_id = {d.id: d for d in jax.devices()}
            kwargs["devices"] = [by_id[i] for _, i in kwargs["devices"]]
        if isinstance(kwargs.get("sharding"), _Mesh):
            kwargs["sharding"] = kwargs["sharding"].build()
        type(self).__init__(self, *args, **kwargs)

    @property
    def layout(self) -> Layout:
        """How the parameter pytree maps to the flat coordinates."""
        return self._layout
