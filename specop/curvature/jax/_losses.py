r"""Losses on model outputs: each batch's sum ``S_b`` and normalizer ``Z_b``, and the per-term scores of the Fishers.

Every loss is read as ``S_b = sum_n w_n l_n`` over its *terms* ``n`` with a normalizer
``Z_b`` that does not depend on the parameters (:mod:`specop.curvature._core`), the
same rules as the torch operators:

=========================================  ==========================  ===========================================
loss                                       terms ``n``                 ``w_n`` (``Z_b = sum_n w_n`` for the mean)
=========================================  ==========================  ===========================================
``CrossEntropyLoss``, integer labels       positions of ``(B, ..., V)``  ``m_n c_{y_n}``, 0 if ``y_n == ignore_index``
``CrossEntropyLoss``, soft targets         positions                   ``m_n``
``MSELoss`` (mean)                         samples                     ``sum_d m_nd`` (the sample's entries)
``MSELoss`` (sum)                          samples                     1 (``Z_b = None``: ``L = sum_b S_b``)
a callable ``loss(outputs, targets)``      samples                     ``Z_n`` of the loss on sample ``n`` alone
=========================================  ==========================  ===========================================

with ``c`` the class weights (``weight=``, default 1) and ``m`` the operator's ``mask``
(default 1). The cross-entropy of a position is ``-sum_c c_c q_c log softmax(z)_c`` with
``q`` the one-hot label (or the soft target) smoothed as ``(1 - eps) q + eps / V``; as for
``torch.nn.CrossEntropyLoss``, the mean divides by ``sum_n c_{y_n}`` over the kept labels.
``MSELoss`` is ``sum m (z - t)^2`` (the mean divides by the number of entries).
A callable's scalar return is the mean over the batch's ``B`` samples
(``S_b = B * loss``, ``Z_b = B``); it may return ``(sum, normalizer)`` instead, and
``(value, aux)`` with ``has_aux=True``.

**Scores** ``R`` and coefficients ``a`` with ``F_b = J^T (sum_{s,n} a_n r_{sn} r_{sn}^T) J``:

* empirical: ``r_n = d(w_n l_n)/dz_n`` at the data's targets and ``a_n = 1 / w_n`` (0 when
  ``w_n = 0``), so term ``n`` adds ``w_n g_n g_n^T`` with ``g_n`` the gradient of the
  *unweighted* term loss ``l_n``.
* Monte Carlo (Martens, "New insights and perspectives on the natural gradient method",
  JMLR 21, 2020, Sec. 9.2): cross-entropy ``r = softmax(z_n) - e_{\hat y}`` with
  ``\hat y ~ softmax(z_n)`` and ``a_n = m_n sum_c c_c q_{nc} / S``; MSE ``r = sqrt(2 m) eps``
  with ``eps ~ N(0, I)`` and ``a_n = 1 / S``. ``E[a r r^T]`` is the term's output Hessian, so
  the expectation is the GGN. Draw ``e`` of sample ``j`` (its global index over the data
  set) is a pure function of ``(seed, j, e)``: the counter-based Threefry-2x32 hash of the
  pair ``(j, e)`` under the key ``PRNGKey(seed)`` (Salmon, Moraes, Dror & Shaw, "Parallel
  random numbers: as easy as 1, 2, 3", SC 2011), drawn in float32 for every precision, so
  the sampled operator is one fixed matrix for any batching and any dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from specop.curvature._core import BatchLoss, as_batch_loss

__all__ = ["CrossEntropyLoss", "MSELoss", "UserLoss", "Scores", "resolve_loss", "uniform"]


def uniform(key: Any, index: Any, shape: tuple[int, ...]) -> Any:
    """Float32 draws in the open interval (0, 1), shape ``(len(index), *shape)``.

    Draw ``e`` (flat position in ``shape``) of sample ``index[i]`` is the Threefry-2x32
    hash of the counter pair ``(index[i], e)`` under ``key`` (a raw ``uint32`` key pair):
    a pure function of the three, whatever else is drawn (one hash call, cheap to compile).
    """
    n = int(np.prod(shape, dtype=np.int64))
    j = jnp.broadcast_to(jnp.asarray(index).astype(jnp.uint32)[:, None], (index.shape[0], n))
    e = jnp.broadcast_to(jnp.arange(n, dtype=jnp.uint32)[None], j.shape)
    bits = threefry_2x32(jnp.asarray(key, jnp.uint32), jnp.concatenate([j.ravel(), e.ravel()]))[: j.size]
    u = ((bits >> 9).astype(jnp.float32) + 0.5) / np.float32(2 ** 23)
    return u.reshape(index.shape[0], *shape)


class Scores(NamedTuple):
    """``R`` of shape ``(S, N, E)`` (samples, terms, entries of a term) and ``coef`` of shape ``(N,)``."""

    R: Any
    coef: Any


def _inverse(w: Any) -> Any:
    safe = jnp.where(w > 0, w, 1)
    return jnp.where(w > 0, 1 / safe, 0)


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    return reduction


class CrossEntropyLoss:
    """Cross-entropy of logits ``(B, ..., V)``, as ``torch.nn.CrossEntropyLoss`` (class axis last).

    Parameters
    ----------
    weight : array of shape (V,), optional
        Class weights ``c``.
    ignore_index : int
        Integer labels equal to it are ignored (no loss, no weight).
    reduction : {"mean", "sum"}
    label_smoothing : float
        ``eps`` in ``[0, 1]``: targets ``(1 - eps) q + eps / V``.

    Targets are integer labels of shape ``(B, ...)`` or soft targets (probabilities) of
    the logits' shape.
    """

    name = "cross_entropy"
    mc = True

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        self.weight = None if weight is None else jnp.asarray(weight)
        if self.weight is not None and self.weight.ndim != 1:
            raise ValueError(f"weight: expected class weights of shape (V,), got shape {self.weight.shape}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"label_smoothing: expected a float in [0, 1], got {label_smoothing!r}")
        self.ignore_index, self.reduction = int(ignore_index), _check_reduction(reduction)
        self.label_smoothing = float(label_smoothing)

    def __repr__(self) -> str:
        return (f"CrossEntropyLoss(weight={self.weight}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing})")

    def _parts(self, z: Any, t: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Per position: weighted loss ``w_n l_n``, weight ``w_n``, output-Hessian scale ``a_n``."""
        V = z.shape[-1]
        c = jnp.ones(V, z.dtype) if self.weight is None else self.weight.astype(z.dtype)
        if c.shape != (V,):
            raise ValueError(f"weight: {c.shape[0]} class weights for logits with {V} classes")
        t = jnp.asarray(t)
        if jnp.issubdtype(t.dtype, jnp.floating) and t.shape == z.shape:  # soft targets
            q, keep = t.astype(z.dtype), jnp.ones(z.shape[:-1], z.dtype)
            w = keep
        elif jnp.issubdtype(t.dtype, jnp.integer) and t.shape == z.shape[:-1]:
            keep = (t != self.ignore_index).astype(z.dtype)
            labels = jnp.where(t == self.ignore_index, 0, t)
            q = jax.nn.one_hot(labels, V, dtype=z.dtype)
            w = keep * jnp.take(c, labels)
        else:
            raise ValueError(f"cross_entropy: logits of shape {tuple(z.shape)} (class axis last) need integer labels "
                             f"of shape {tuple(z.shape[:-1])} or soft targets of shape {tuple(z.shape)}, got "
                             f"{t.dtype} targets of shape {tuple(t.shape)}")
        if self.label_smoothing:
            q = (1 - self.label_smoothing) * q + self.label_smoothing / V
        if mask is not None:
            m = jnp.asarray(mask).astype(z.dtype)
            if m.shape != z.shape[:-1]:
                raise ValueError(f"mask: expected shape {tuple(z.shape[:-1])} (one weight per position), "
                                 f"got {tuple(m.shape)}")
            keep, w = keep * m, w * m
        cq = q * c
        per = -jnp.einsum("...v,...v->...", cq, jax.nn.log_softmax(z, axis=-1)) * keep
        return per, jax.lax.stop_gradient(w), jax.lax.stop_gradient(keep * jnp.sum(cq, axis=-1))

    def batch_loss(self, z: Any, t: Any, mask: Any = None) -> BatchLoss:
        per, w, _ = self._parts(z, t, mask)
        return BatchLoss(jnp.sum(per), jnp.sum(w) if self.reduction == "mean" else None)

    def invalid(self, z: Any, t: Any) -> Any:
        """How many integer labels are neither a class nor ``ignore_index`` (0 for soft targets)."""
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.integer):
            return jnp.zeros((), jnp.int32)
        bad = ((t < 0) | (t >= z.shape[-1])) & (t != self.ignore_index)
        return jnp.sum(bad.astype(jnp.int32))

    def empirical(self, z: Any, t: Any, mask: Any = None) -> Scores:
        per_fn = lambda zz: jnp.sum(self._parts(zz, t, mask)[0])  # noqa: E731
        R = jax.grad(per_fn)(z)
        w = self._parts(z, t, mask)[1]
        V = z.shape[-1]
        return Scores(R.reshape(1, -1, V), _inverse(w).reshape(-1))

    def sample(self, z: Any, t: Any, mask: Any, key: Any, index: Any, samples: int) -> Scores:
        V = z.shape[-1]
        a = self._parts(z, t, mask)[2]
        z = jax.lax.stop_gradient(z)
        gumbel = -jnp.log(-jnp.log(uniform(key, index, (samples, *z.shape[1:]))))  # the Gumbel-max trick
        labels = jnp.argmax(z[:, None] + gumbel.astype(z.dtype), axis=-1)
        p = jax.nn.softmax(z, axis=-1)
        R = p[:, None] - jax.nn.one_hot(labels, V, dtype=z.dtype)  # (B, S, ..., V)
        R = jnp.moveaxis(R, 1, 0).reshape(samples, -1, V)
        return Scores(R, a.reshape(-1) / samples)

    def __call__(self, z: Any, t: Any, mask: Any = None) -> Any:
        b = self.batch_loss(z, t, mask)
        return b.total if b.normalizer is None else b.total / b.normalizer


class MSELoss:
    """Squared error ``sum m (z - t)^2`` over every entry; the mean divides by the number of entries.

    As ``torch.nn.MSELoss(reduction=...)``. Targets are reshaped to the outputs' shape;
    a ``mask`` of shape ``(B, ...)`` broadcasts over the trailing axes.
    """

    name = "mse"
    mc = True

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)

    def __repr__(self) -> str:
        return f"MSELoss(reduction={self.reduction!r})"

    def _parts(self, z: Any, t: Any, mask: Any) -> tuple[Any, Any]:
        t = jnp.asarray(t)
        if t.size != z.size:
            raise ValueError(f"mse: targets of shape {tuple(t.shape)} do not match outputs of shape {tuple(z.shape)}")
        m = jnp.ones_like(z)
        if mask is not None:
            mk = jnp.asarray(mask).astype(z.dtype)
            if mk.shape != z.shape[:mk.ndim]:
                raise ValueError(f"mask: expected a leading part of the outputs' shape {tuple(z.shape)}, "
                                 f"got {tuple(mk.shape)}")
            m = m * mk.reshape(mk.shape + (1,) * (z.ndim - mk.ndim))
        return t.reshape(z.shape).astype(z.dtype), jax.lax.stop_gradient(m)

    def batch_loss(self, z: Any, t: Any, mask: Any = None) -> BatchLoss:
        t, m = self._parts(z, t, mask)
        return BatchLoss(jnp.sum(m * (z - t) ** 2), jnp.sum(m) if self.reduction == "mean" else None)

    def invalid(self, z: Any, t: Any) -> Any:
        return jnp.zeros((), jnp.int32)

    def empirical(self, z: Any, t: Any, mask: Any = None) -> Scores:
        t, m = self._parts(z, t, mask)
        B = z.shape[0]
        w = jnp.sum(m.reshape(B, -1), axis=1) if self.reduction == "mean" else jnp.ones(B, z.dtype)
        return Scores((2 * m * (z - t)).reshape(1, B, -1), _inverse(w))

    def sample(self, z: Any, t: Any, mask: Any, key: Any, index: Any, samples: int) -> Scores:
        _, m = self._parts(z, t, mask)
        B = z.shape[0]
        u = uniform(key, index, (samples, *z.shape[1:]))
        eps = (np.float32(np.sqrt(2)) * jax.lax.erf_inv(2 * u - 1)).astype(z.dtype)  # N(0, 1) by inversion
        R = jnp.moveaxis(eps, 1, 0) * jnp.sqrt(2 * m)[None]
        return Scores(R.reshape(samples, B, -1), jnp.full((B,), 1 / samples, z.dtype))

    def __call__(self, z: Any, t: Any, mask: Any = None) -> Any:
        b = self.batch_loss(z, t, mask)
        return b.total if b.normalizer is None else b.total / b.normalizer


class UserLoss:
    """A callable ``loss(outputs, targets)``: a scalar mean over the ``B`` samples, or ``(sum, normalizer)``."""

    name = "user"
    mc = False

    def __init__(self, fn: Callable[..., Any], has_aux: bool = False) -> None:
        self.fn, self.has_aux = fn, bool(has_aux)

    def batch_loss(self, z: Any, t: Any, mask: Any = None) -> BatchLoss:
        out = self.fn(z, t)
        if self.has_aux:
            if not isinstance(out, tuple) or len(out) != 2:
                raise ValueError(f"loss_fn: has_aux=True expects (loss, aux), got {type(out).__name__}")
            out = out[0]
        return as_batch_loss(out, z.shape[0], "loss_fn")

    def invalid(self, z: Any, t: Any) -> Any:
        return jnp.zeros((), jnp.int32)

    def empirical(self, z: Any, t: Any, mask: Any = None) -> Scores:
        B = z.shape[0]
        axes = jax.tree_util.tree_map(lambda a: 0 if jnp.ndim(a) >= 1 and jnp.shape(a)[0] == B else None, t)

        def term(z1: Any, t1: Any) -> tuple[Any, Any]:
            one = jax.tree_util.tree_map(lambda a, ax: a[None] if ax == 0 else a, t1, axes)
            total = lambda zz: self.batch_loss(zz[None], one).total  # noqa: E731
            b = self.batch_loss(z1[None], one)
            w = jnp.ones((), z.dtype) if b.normalizer is None else jnp.asarray(b.normalizer, z.dtype)
            return jax.grad(total)(z1), jax.lax.stop_gradient(w)

        R, w = jax.vmap(term, in_axes=(0, axes))(z, t)
        return Scores(R.reshape(1, B, -1), _inverse(w))


LOSSES: dict[str, Callable[[], Any]] = {"cross_entropy": CrossEntropyLoss, "mse": MSELoss}


def resolve_loss(loss: Any, what: str = "loss_fn_on_outputs", has_aux: bool = False) -> Any:
    """A loss object for a name (``"cross_entropy"``, ``"mse"``), a built-in loss, or a callable."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"{what}: expected one of {tuple(LOSSES)}, a CrossEntropyLoss/MSELoss or a callable, "
                             f"got {loss!r}")
        return LOSSES[loss]()
    if isinstance(loss, (CrossEntropyLoss, MSELoss, UserLoss)):
        return loss
    if not callable(loss):
        raise TypeError(f"{what}: expected a name or a callable, got {type(loss).__name__}")
    return UserLoss(loss, has_aux)
