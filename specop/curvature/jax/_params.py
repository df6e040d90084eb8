"""Which leaves of a parameter pytree are the operator's coordinates, and the flat vector of them.

A parameter pytree may hold more than trainable weights: a whole ``eqx.Module`` (its
activation functions are leaves), an ``nnx.split`` state (RNG keys, integer counters,
``BatchStat`` running averages), Flax linen variables (``params`` and ``batch_stats``).
The operator's coordinates ``theta`` are the *trainable* leaves, raveled in tree order
(:func:`jax.flatten_util.ravel_pytree` order); every other leaf is *fixed*: passed to
the functions unchanged and never differentiated. A leaf is trainable when

* it is an array of a floating dtype (integer, boolean and PRNG-key arrays, Python
  scalars, functions and ``None`` never are), and
* ``trainable`` selects it: by default every floating array except the values of Flax
  ``nnx.Variable`` s that are not ``nnx.Param`` (``BatchStat``, caches); or a callable
  ``trainable(path, leaf) -> bool`` with ``path`` the leaf's key path as a string
  (``"['params']['Dense_0']['kernel']"``); or a pytree prefix of booleans
  (``{"params": True, "batch_stats": False}``), as optax masks are written.

A Flax linen variables dict (a mapping with ``"params"`` and other collections) without an
explicit ``trainable`` is refused: whether ``batch_stats`` are coordinates is the user's
call, not a guess.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["Layout", "split_params", "is_none"]


def is_none(x: Any) -> bool:
    """``None`` is a leaf here (Equinox fields, filtered trees), so structures line up."""
    return x is None


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _is_float(x: Any) -> bool:
    return _is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)


def _flax_variable(x: Any) -> type | None:
    """The class of a Flax ``nnx.Variable`` node (without importing flax), else None."""
    for cls in type(x).__mro__:
        if cls.__name__ in ("Variable", "VariableState") and cls.__module__.startswith("flax"):
            return type(x)
    return None


def _default_flags(params: Any, leaves: list[Any]) -> list[bool]:
    """Floating arrays, except values of non-``Param`` nnx variables."""
    coarse = jax.tree_util.tree_leaves(params, is_leaf=lambda x: is_none(x) or _flax_variable(x) is not None)
    flags: list[bool] = []
    for node in coarse:
        var = _flax_variable(node)
        if var is None:
            flags.append(True)
            continue
        param = any(c.__name__ == "Param" for c in var.__mro__)
        flags.extend([param] * len(jax.tree_util.tree_leaves(node, is_leaf=is_none)))
    if len(flags) != len(leaves):  # an unusual Variable layout: fall back to every floating leaf
        flags = [True] * len(leaves)
    return flags


def _mask_flags(mask: Any, params: Any, count: int) -> list[bool]:
    try:
        spread = jax.tree_util.tree_map(
            lambda m, sub: jax.tree_util.tree_map(lambda _: bool(m), sub, is_leaf=is_none),
            mask, params, is_leaf=lambda x: isinstance(x, bool))
    except (ValueError, TypeError) as err:
        raise ValueError(f"trainable: expected a callable or a pytree prefix of params with bool leaves ({err})"
                         ) from None
    flags = jax.tree_util.tree_leaves(spread, is_leaf=lambda x: isinstance(x, bool))
    if len(flags) != count or not all(isinstance(f, bool) for f in flags):
        raise ValueError("trainable: expected a pytree prefix of params with bool leaves")
    return flags


@dataclass(frozen=True)
class Layout:
    """How ``params`` splits into the flat coordinates and the fixed leaves.

    Attributes
    ----------
    treedef : PyTreeDef
        Structure of ``params`` (``None`` counted as a leaf).
    kinds : tuple of str
        Per leaf: ``"theta"`` (a coordinate), ``"fixed"`` (an array passed unchanged),
        ``"static"`` (anything else, kept in the structure).
    paths : tuple of str
        Per leaf, its key path.
    statics : tuple
        Per leaf, the static value (``None`` for arrays).
    """

    treedef: Any
    kinds: tuple[str, ...]
    paths: tuple[str, ...]
    statics: tuple[Any, ...]
    unravel_leaves: Callable[[Any], list[Any]]
    dtype: Any

    @property
    def trainable_paths(self) -> list[str]:
        return [p for p, k in zip(self.paths, self.kinds, strict=True) if k == "theta"]

    @property
    def fixed_paths(self) -> list[str]:
        return [p for p, k in zip(self.paths, self.kinds, strict=True) if k != "theta"]

    def combine(self, flat: Any, fixed: list[Any]) -> Any:
        """The parameter pytree with coordinates ``flat`` and fixed arrays ``fixed``."""
        theta, rest = iter(self.unravel_leaves(flat)), iter(fixed)
        leaves = [next(theta) if k == "theta" else next(rest) if k == "fixed" else s
                  for k, s in zip(self.kinds, self.statics, strict=True)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def _leaves(self, tree: Any, what: str) -> list[Any]:
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
        if treedef != self.treedef:
            raise ValueError(f"{what}: expected a pytree with the structure of params, {self.treedef}, got {treedef}")
        return leaves

    def ravel(self, tree: Any, what: str = "ravel") -> Any:
        """Flat vector of the coordinate leaves of a params-shaped ``tree`` (fixed leaves ignored)."""
        leaves = self._leaves(tree, what)
        parts = [jnp.ravel(jnp.asarray(a)).astype(self.dtype) for a, k in zip(leaves, self.kinds, strict=True)
                 if k == "theta"]
        return jnp.concatenate(parts)

    def fixed_of(self, tree: Any, what: str) -> list[Any]:
        """The fixed arrays of a params-shaped ``tree``."""
        leaves = self._leaves(tree, what)
        return [a for a, k in zip(leaves, self.kinds, strict=True) if k == "fixed"]

    def unravel(self, flat: Any) -> Any:
        """Params-shaped pytree of the coordinates ``flat``; ``None`` at every fixed or static leaf."""
        theta = iter(self.unravel_leaves(flat))
        leaves = [next(theta) if k == "theta" else None for k in self.kinds]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def split_params(params: Any, trainable: Any = None) -> tuple[Layout, Any, list[Any]]:
    """``(layout, flat, fixed)``: the coordinate vector and the fixed arrays of ``params``.

    Raises
    ------
    ValueError
        For Flax linen variables without ``trainable``, a bad ``trainable`` or no
        floating leaf to differentiate.
    """
    if (trainable is None and isinstance(params, Mapping) and "params" in params and len(params) > 1):
        raise ValueError(f"params: looks like Flax linen variables with collections {sorted(map(str, params))}; "
                         "say which are coordinates, e.g. trainable={'params': True, 'batch_stats': False} "
                         "(the others stay fixed), or pass variables['params'] only")
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)
    paths = tuple(jax.tree_util.keystr(p) for p, _ in with_paths)
    leaves = [leaf for _, leaf in with_paths]
    if trainable is None:
        flags = _default_flags(params, leaves)
    elif callable(trainable):
        flags = [bool(trainable(p, leaf)) for p, leaf in zip(paths, leaves, strict=True)]
    else:
        flags = _mask_flags(trainable, params, len(leaves))
    kinds = tuple("theta" if f and _is_float(leaf) else "fixed" if _is_array(leaf) else "static"
                  for f, leaf in zip(flags, leaves, strict=True))
    theta = [leaf for leaf, k in zip(leaves, kinds, strict=True) if k == "theta"]
    if not theta:
        raise ValueError("params: no trainable floating-point array among the leaves "
                         f"({len(leaves)} leaves; trainable={trainable!r})")
    dtypes = {jnp.dtype(a.dtype) for a in theta}
    if len(dtypes) > 1:
        warnings.warn(f"params: trainable leaves of several dtypes {sorted(map(str, dtypes))}; the flat vector "
                      "promotes them to one (pass dtype= to choose)", UserWarning, stacklevel=4)
    flat, unravel_leaves = ravel_pytree([jnp.asarray(a) for a in theta])
    fixed = [jnp.asarray(leaf) for leaf, k in zip(leaves, kinds, strict=True) if k == "fixed"]
    statics = tuple(leaf if k == "static" else None for leaf, k in zip(leaves, kinds, strict=True))
    return Layout(treedef, kinds, paths, statics, unravel_leaves, flat.dtype), flat, fixed
