"""Hessian of the mean loss of a JAX function over a data set.

``H = (1/N) sum_b n_b grad^2_theta L_b(theta)`` with ``L_b = loss_fn(params, batch_b)``
the batch-mean loss. Products are forward-over-reverse, ``jvp(grad L_b)`` (Pearlmutter,
"Fast exact multiplication by the Hessian", Neural Computation 6, 1994), vmapped over
the columns and jit-compiled once per operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from specop.curvature.jax._losses import resolve_loss
from specop.curvature.jax.base import JaxCurvatureOperator

__all__ = ["HessianOperator"]


class HessianOperator(JaxCurvatureOperator):
    """Hessian ``(1/N) sum_b n_b grad^2 loss_fn(params, batch_b)``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch) -> scalar``, the mean over the batch; ``batch`` is
        the tuple of arrays of one batch, e.g. ``(X, y)``.
    params : pytree
        Parameters at which the Hessian is taken.
    data : (X, y) tuple of arrays or iterable of batches
        See :class:`~specop.curvature.jax.base.JaxCurvatureOperator` (also for
        ``batch_size``, ``devices``, ``sharding``, ``dtype``).
    model_fn : callable, optional
        ``model_fn(params, X) -> outputs``. When given, ``loss_fn`` is the loss on the
        outputs, ``loss_fn(outputs, targets)`` (or ``"cross_entropy"``/``"mse"``), as
        for :class:`~specop.curvature.jax.GGNOperator`, and the batch loss is
        ``loss_fn(model_fn(params, X), y)``.
    """

    def __init__(self, loss_fn: Any, params: Any, data: Any, model_fn: Callable[..., Any] | None = None,
                 **kwargs: Any) -> None:
        if model_fn is not None:
            if not callable(model_fn):
                raise TypeError(f"model_fn: expected a callable, got {type(model_fn).__name__}")
            _, out_loss = resolve_loss(loss_fn)
            self.loss_fn = lambda p, batch: out_loss(model_fn(p, batch[0]), batch[1])
        elif not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
        else:
            self.loss_fn = loss_fn
        super().__init__(params, data, **kwargs)

    def _flat_loss(self, flat: Any, batch: tuple) -> Any:
        return self.loss_fn(self._unravel(flat), batch)

    def _batch_matmat(self, flat: Any, batch: tuple, V: Any, index: Any) -> Any:
        grad = jax.grad(self._flat_loss)

        def hvp(v: Any) -> Any:
            return jax.jvp(lambda p: grad(p, batch), (flat,), (v.astype(flat.dtype),))[1]

        return jax.vmap(hvp, in_axes=1, out_axes=1)(V)
