"""Batches of any pytree structure for the JAX operators, and how a batch feeds the model and the loss.

A batch is any pytree of arrays: an ``(X, y)`` or ``(X, y, mask)`` tuple, a dict
(``{"tokens": ..., "labels": ..., "mask": ...}``), a namedtuple, a registered dataclass.
``data`` is one batch or a re-iterable of batches (a list, a loader whose ``__iter__``
starts over); it is read once per product and never copied to the device as a whole.
A mapping of arrays, a tuple whose items are arrays or mappings of arrays, or any other
non-iterable pytree of arrays is one batch; a list, a tuple of tuples and any other
iterable are collections of batches (wrap a single batch of another kind in a list).

Selectors say what the model and the loss see, each ``None`` (the default), an int or
key (``targets="labels"``), or a callable ``batch -> value``:

* ``inputs`` (default ``batch[0]`` of a tuple batch): the model's second argument;
* ``targets`` (default ``batch[1]``): what the loss compares the outputs to;
* ``mask`` (default none): per-term weights (a 0/1 token mask) for the built-in losses;
* ``output`` (default: the outputs themselves): the part of tuple or dict outputs the loss sees.

A default that does not apply (a dict batch without ``inputs=``) is a ``ValueError``
naming the selector to pass; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Batch", "Selector", "is_batch", "split_batch", "leading_size", "place", "float_dtypes"]


class Batch(NamedTuple):
    """One batch as the per-batch hooks receive it (a value, never state of the operator).

    Attributes
    ----------
    data : pytree of arrays
        The batch, on the operator's devices.
    offset : 0-d int32 array
        Global index of the batch's first sample (data order over all batches), for
        per-sample random draws.
    """

    data: Any
    offset: Any


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def is_batch(data: Any) -> bool:
    """Whether ``data`` is one batch rather than a collection of batches."""
    if _is_array(data):
        return True
    if isinstance(data, Mapping):
        leaves = jax.tree_util.tree_leaves(data)
        return bool(leaves) and all(_is_array(a) for a in leaves)
    if isinstance(data, tuple):
        return len(data) > 0 and all(_is_array(a) or (isinstance(a, Mapping) and is_batch(a)) for a in data)
    if isinstance(data, list) or hasattr(data, "__iter__"):
        return False
    leaves = jax.tree_util.tree_leaves(data)
    return bool(leaves) and all(_is_array(a) for a in leaves)


class Selector:
    """A part of a batch (or of model outputs): an index/key, a callable, or a default position."""

    def __init__(self, spec: Any, name: str, default: int | None) -> None:
        if spec is not None and not callable(spec) and not isinstance(spec, (int, str)):
            raise TypeError(f"{name}: expected None, an int or str key, or a callable, got {type(spec).__name__}")
        self.spec, self.name, self.default = spec, name, default

    @property
    def given(self) -> bool:
        return self.spec is not None or self.default is not None

    def __call__(self, tree: Any) -> Any:
        spec = self.spec
        if spec is None:
            if self.default is None:
                return None
            if not isinstance(tree, (tuple, list)) or len(tree) <= self.default:
                kind = type(tree).__name__
                raise ValueError(f"{self.name}: the default is item {self.default} of an (X, y, ...) tuple batch, "
                                 f"but the batch is a {kind}; pass {self.name}= (a key or a callable batch -> value)")
            return tree[self.default]
        if callable(spec):
            return spec(tree)
        try:
            return tree[spec]
        except (KeyError, IndexError, TypeError):
            if isinstance(spec, str) and hasattr(tree, spec):
                return getattr(tree, spec)
            raise ValueError(f"{self.name}={spec!r}: not found in a {type(tree).__name__}") from None

    def __reduce__(self) -> tuple:
        return Selector, (self.spec, self.name, self.default)


def leading_size(tree: Any, what: str) -> int:
    """The common size of axis 0 of the arrays of ``tree``; ``ValueError`` naming the shapes otherwise."""
    leaves = jax.tree_util.tree_leaves(tree)
    shapes = [tuple(np.shape(a)) for a in leaves]
    if not leaves or any(len(s) == 0 for s in shapes):
        raise ValueError(f"{what}: every array needs a leading sample axis (shapes {shapes})")
    sizes = {s[0] for s in shapes}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"{what}: arrays disagree on (or have zero) samples: leading sizes {[s[0] for s in shapes]}")
    return sizes.pop()


def split_batch(batch: Any, batch_size: int) -> list[Any]:
    """``batch`` cut along axis 0 into batches of ``batch_size`` (the last may be shorter)."""
    n = leading_size(batch, "data")
    return [jax.tree_util.tree_map(lambda a, lo=lo: a[lo: lo + batch_size], batch) for lo in range(0, n, batch_size)]


def float_dtypes(tree: Any) -> set[str]:
    """Names of the floating dtypes among the arrays of ``tree``."""
    return {str(jnp.dtype(a.dtype)) for a in jax.tree_util.tree_leaves(tree)
            if _is_array(a) and jnp.issubdtype(a.dtype, jnp.floating)}


def place(batch: Any, put: Callable[[Any], Any], dtype: Any, what: str = "data") -> Any:
    """``batch`` on the operator's devices (explicit transfers only) with floats cast to ``dtype``."""
    with_paths = jax.tree_util.tree_flatten_with_path(batch)[0]
    for path, a in with_paths:
        if not _is_array(a):
            raise TypeError(f"{what}: batch leaf {jax.tree_util.keystr(path)} is a {type(a).__name__}, "
                            "expected an array (numpy or jax)")

    def move(a: Any) -> Any:
        if dtype is not None and jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype:
            a = a.astype(dtype) if isinstance(a, np.ndarray) else put(a).astype(dtype)
        return put(a)

    return jax.tree_util.tree_map(move, batch)
