"""A model and a loss on its outputs: the batch loss of ``loss(output(model_fn(params, inputs)), targets)``.

Shared by the Hessian (with ``model_fn=``), the GGN and the Fishers. The selectors
(:mod:`specop.curvature.jax._batches`) say what the model and the loss see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from specop.curvature._core import BatchLoss
from specop.curvature.jax._batches import Selector, leading_size
from specop.curvature.jax._losses import UserLoss, resolve_loss

__all__ = ["ModelLoss"]


class ModelLoss:
    """``model_fn(params, inputs(batch))`` -> ``output`` -> ``loss(outputs, targets(batch), mask(batch))``."""

    def __init__(self, model_fn: Callable[..., Any], loss: Any, *, inputs: Any = None, targets: Any = None,
                 mask: Any = None, output: Any = None, has_aux: bool = False,
                 what: str = "loss_fn_on_outputs") -> None:
        if not callable(model_fn):
            raise TypeError(f"model_fn: expected a callable, got {type(model_fn).__name__}")
        self.model_fn = model_fn
        self.loss = resolve_loss(loss, what, has_aux)
        if mask is not None and isinstance(self.loss, UserLoss):
            raise ValueError("mask: only the built-in losses ('cross_entropy', 'mse') take a mask; a callable loss "
                             "applies its own (select it with targets= and return (sum, normalizer))")
        self.inputs = Selector(inputs, "inputs", 0)
        self.targets = Selector(targets, "targets", 1)
        self.mask = Selector(mask, "mask", None)
        self.output = Selector(output, "output", None)

    def outputs(self, params: Any, data: Any) -> Any:
        out = self.model_fn(params, self.inputs(data))
        return out if self.output.spec is None else self.output(out)

    def batch_loss_of(self, z: Any, data: Any) -> BatchLoss:
        return self.loss.batch_loss(z, self.targets(data), self.mask(data))

    def batch_loss(self, params: Any, data: Any) -> BatchLoss:
        return self.batch_loss_of(self.outputs(params, data), data)

    def samples(self, params_of: Callable[[Any], Any], flat: Any, data: Any) -> int:
        """Samples of a batch: axis 0 of the outputs (for a tuple batch, also of every input array)."""
        shape = tuple(jax.eval_shape(lambda f: self.outputs(params_of(f), data), flat).shape)
        if isinstance(data, tuple):
            n = leading_size(data, "data")
            if not shape or shape[0] != n:
                raise ValueError(f"model_fn must return outputs with the {n} samples on axis 0, got shape {shape}")
        elif not shape:
            raise ValueError("model_fn must return outputs with the samples on axis 0, got a scalar")
        return int(shape[0])
