r"""Hessian of the data-set loss of a JAX function.

.. math::

    H = \nabla^2_\theta L(\theta), \qquad
    L(\theta) = \frac{\sum_b S_b(\theta)}{\sum_b Z_b}

with ``S_b, Z_b`` what batch ``b``'s loss reports (:mod:`specop.curvature._core`): a
scalar ``loss_fn(params, batch)`` is the mean over the batch's ``n_b`` samples
(``S_b = n_b loss``, ``Z_b = n_b``, so ``H = (1/N) sum_b n_b nabla^2 loss_b``); a pair
``(sum, normalizer)`` is taken as it is (``normalizer=None``: a summed loss,
``L = sum_b S_b``). Products are forward-over-reverse, ``jvp(grad S_b)`` (Pearlmutter,
"Fast exact multiplication by the Hessian", Neural Computation 6, 1994), vmapped over
the columns and jit-compiled once per batch shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from specop.curvature._core import BatchLoss, as_batch_loss
from specop.curvature.jax._batches import Batch, leading_size
from specop.curvature.jax._losses import CrossEntropyLoss, MSELoss
from specop.curvature.jax._model import ModelLoss
from specop.curvature.jax.base import JaxCurvatureOperator, Theta

__all__ = ["HessianOperator"]


class HessianOperator(JaxCurvatureOperator):
    """Hessian ``nabla^2 (sum_b S_b / sum_b Z_b)`` of ``loss_fn`` over the data.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch)`` -> a scalar (the mean over the batch's samples, the
        common size of axis 0 of its arrays), or ``(sum, normalizer)``; with
        ``has_aux=True`` -> ``(loss, aux)`` (``aux`` ignored). ``batch`` is one batch as
        given, e.g. the tuple ``(X, y)`` or a dict.
    params : pytree
        Parameters at which the Hessian is taken.
    data : batch or re-iterable of batches
        See :class:`~specop.curvature.jax.base.JaxCurvatureOperator` (also for
        ``trainable``, ``batch_size``, ``num_batches``, ``devices``, ``sharding``, ``dtype``).
    model_fn : callable, optional
        ``model_fn(params, inputs) -> outputs``. When given, ``loss_fn`` is the loss on
        the outputs, ``loss_fn(outputs, targets)``, a name (``"cross_entropy"``,
        ``"mse"``) or a :class:`~specop.curvature.jax.CrossEntropyLoss` /
        :class:`~specop.curvature.jax.MSELoss`, as for
        :class:`~specop.curvature.jax.GGNOperator` (with its ``inputs``, ``targets``,
        ``mask`` and ``output`` selectors).
    has_aux : bool
        ``loss_fn`` returns ``(loss, aux)``.
    """

    def __init__(self, loss_fn: Any, params: Any, data: Any, model_fn: Callable[..., Any] | None = None, *,
                 has_aux: bool = False, inputs: Any = None, targets: Any = None, mask: Any = None,
                 output: Any = None, **kwargs: Any) -> None:
        self._init = ((loss_fn, params, data), dict(model_fn=model_fn, has_aux=has_aux, inputs=inputs,
                                                    targets=targets, mask=mask, output=output, **kwargs))
        self.model: ModelLoss | None = None
        if model_fn is not None:
            self.model = ModelLoss(model_fn, loss_fn, inputs=inputs, targets=targets, mask=mask, output=output,
                                   has_aux=has_aux, what="loss_fn")
        elif not callable(loss_fn) or isinstance(loss_fn, (str, CrossEntropyLoss, MSELoss)):
            raise TypeError(f"loss_fn: expected a callable loss_fn(params, batch), got {type(loss_fn).__name__} "
                            "(a loss on outputs needs model_fn=)")
        elif any(s is not None for s in (inputs, targets, mask, output)):
            raise ValueError("inputs/targets/mask/output: selectors need model_fn= (loss_fn(params, batch) sees the "
                             "whole batch)")
        self.loss_fn, self.has_aux = loss_fn, bool(has_aux)
        super().__init__(params, data, **kwargs)

    def _batch_loss(self, theta: Theta, batch: Batch) -> BatchLoss:
        params = self.params(theta)
        if self.model is not None:
            return self.model.batch_loss(params, batch.data)
        out = self.loss_fn(params, batch.data)
        if self.has_aux:
            if not isinstance(out, tuple) or len(out) != 2:
                raise ValueError(f"loss_fn: has_aux=True expects (loss, aux), got {type(out).__name__}")
            out = out[0]
        if isinstance(out, (tuple, BatchLoss)):
            return as_batch_loss(out, None)
        count = leading_size(batch.data, "loss_fn returned a scalar, the mean over the batch's samples, but the batch")
        return as_batch_loss(out, count)

    def _samples(self, theta: Theta, data: Any) -> int:
        if self.model is not None:
            return self.model.samples(lambda f: self.params(Theta(f, theta.fixed)), theta.flat, data)
        return super()._samples(theta, data)

    def _invalid(self, theta: Theta, data: Any) -> Any:
        if self.model is None:
            return super()._invalid(theta, data)
        z = self.model.outputs(self.params(theta), data)
        return self.model.loss.invalid(z, self.model.targets(data))

    def _batch_matmat(self, theta: Theta, batch: Batch, V: Any, aux: Any = None) -> Any:
        grad = jax.grad(lambda flat: self._batch_loss(Theta(flat, theta.fixed), batch).total)

        def hvp(v: Any) -> Any:
            return jax.jvp(grad, (theta.flat,), (v.astype(theta.flat.dtype),))[1]

        return jax.vmap(hvp, in_axes=1, out_axes=1)(V)
