"""Losses on model outputs for the JAX GGN and Fisher: names, batch means, Fisher sampling.

The GGN uses the loss Hessian with respect to the outputs (by autodiff, exact for any
loss); the Monte-Carlo Fisher samples targets from the model's predictive distribution:
a categorical over ``softmax(outputs)`` for cross-entropy, and for the mean squared
error (mean over all entries, ``D`` outputs per sample) a Gaussian of variance ``D/2``,
whose negative log-likelihood has exactly that curvature (Martens, "New insights and
perspectives on the natural gradient method", JMLR 21, 2020, Sec. 9.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["resolve_loss", "sample_output_gradients", "LOSSES"]


def cross_entropy(outputs: Any, targets: Any) -> Any:
    """Mean cross-entropy of logits ``(B, C)`` against integer labels ``(B,)``."""
    logp = jax.nn.log_softmax(outputs, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[:, None].astype(jnp.int32), axis=-1))


def mse(outputs: Any, targets: Any) -> Any:
    """Mean squared error over all entries (``torch.nn.MSELoss()``'s convention)."""
    return jnp.mean((outputs - targets.reshape(outputs.shape)) ** 2)


LOSSES: dict[str, Callable[[Any, Any], Any]] = {"cross_entropy": cross_entropy, "mse": mse}


def resolve_loss(loss: Any) -> tuple[str | None, Callable[[Any, Any], Any]]:
    """``(name or None, callable)`` of a loss given by name or as a callable."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss_fn_on_outputs: expected one of {tuple(LOSSES)} or a callable, got {loss!r}")
        return loss, LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss_fn_on_outputs: expected a name or a callable, got {type(loss).__name__}")
    return None, loss


def sample_output_gradients(name: str, outputs: Any, key: Any, samples: int) -> Any:
    """Per-sample output gradients of the per-sample loss at sampled targets: ``(S, B, D)``.

    Their outer products average to the per-sample output Hessian, so that
    ``(1/(B S)) sum J^T g g^T J`` is an unbiased estimate of the GGN (= Fisher).
    """
    B = outputs.shape[0]
    if name == "cross_entropy":
        p = jax.nn.softmax(outputs, axis=-1)
        labels = jax.random.categorical(key, outputs, axis=-1, shape=(samples, B))
        return p[None] - jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
    D = outputs[0].size
    eps = jax.random.normal(key, (samples, *outputs.shape), dtype=outputs.dtype)
    return -jnp.sqrt(2.0 / D) * eps
