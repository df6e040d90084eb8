"""Generalized Gauss-Newton and Fisher matrices of a JAX model over a data set.

GGN (Schraudolph, "Fast curvature matrix-vector products for second-order gradient
descent", Neural Computation 14, 2002): ``G = (1/N) sum_b n_b J_b^T H_b J_b`` with
``J_b`` the Jacobian of the model outputs on batch ``b`` and ``H_b`` the Hessian of the
batch-mean loss with respect to those outputs; applied as ``vjp(H jvp(v))``.

Fisher (Martens 2020, Sec. 5; Kunstner, Balles & Hennig, "Limitations of the empirical
Fisher approximation", NeurIPS 2019): ``kind="mc"`` replaces ``H`` by the average of
``g g^T`` over targets sampled from the model (unbiased for the GGN of cross-entropy
and MSE, to which it converges as ``mc_samples`` grows); ``kind="empirical"`` uses the
per-sample loss gradients at the data's own targets, ``(1/N) sum_n g_n g_n^T``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from specop.curvature.jax._losses import resolve_loss, sample_output_gradients
from specop.curvature.jax.base import JaxCurvatureOperator

__all__ = ["GGNOperator", "FisherOperator"]


class GGNOperator(JaxCurvatureOperator):
    """GGN ``(1/N) sum_b n_b J_b^T (d^2 L_b / d out^2) J_b``.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(params, X) -> outputs`` with the samples on axis 0.
    loss_fn_on_outputs : {"cross_entropy", "mse"} or callable
        ``loss(outputs, targets) -> scalar`` batch mean.
    params, data : see :class:`~specop.curvature.jax.base.JaxCurvatureOperator`.
    """

    def __init__(self, model_fn: Callable[..., Any], loss_fn_on_outputs: Any, params: Any, data: Any,
                 **kwargs: Any) -> None:
        if not callable(model_fn):
            raise TypeError(f"model_fn: expected a callable, got {type(model_fn).__name__}")
        self.model_fn = model_fn
        self.loss_name, self.out_loss = resolve_loss(loss_fn_on_outputs)
        super().__init__(params, data, **kwargs)

    def _outputs(self, flat: Any, X: Any) -> Any:
        return self.model_fn(self._unravel(flat), X)

    def _flat_loss(self, flat: Any, batch: tuple) -> Any:
        return self.out_loss(self._outputs(flat, batch[0]), batch[1])

    def _check_batch(self, flat: Any, batch: tuple) -> None:
        if len(batch) < 2:
            raise ValueError(f"data: a batch must be (X, y), got {len(batch)} array(s)")
        out = jax.eval_shape(self._outputs, flat, batch[0])
        if not out.shape or out.shape[0] != batch[0].shape[0]:
            raise ValueError(f"model_fn must return outputs with the {batch[0].shape[0]} samples on axis 0, "
                             f"got shape {tuple(out.shape)}")
        super()._check_batch(flat, batch)

    def _batch_matmat(self, flat: Any, batch: tuple, V: Any, index: Any) -> Any:
        X, y = batch[0], batch[1]
        out, vjp = jax.vjp(lambda p: self._outputs(p, X), flat)
        loss_grad = jax.grad(lambda o: self.out_loss(o, y))

        def ggn(v: Any) -> Any:
            Jv = jax.jvp(lambda p: self._outputs(p, X), (flat,), (v.astype(flat.dtype),))[1]
            HJv = jax.jvp(loss_grad, (out,), (Jv,))[1]
            return vjp(HJv)[0]

        return jax.vmap(ggn, in_axes=1, out_axes=1)(V)


class FisherOperator(GGNOperator):
    """Fisher matrix: Monte-Carlo (``kind="mc"``) or empirical (``kind="empirical"``).

    Parameters
    ----------
    model_fn, loss_fn_on_outputs, params, data : see :class:`GGNOperator`
        ``kind="mc"`` needs ``"cross_entropy"`` or ``"mse"``.
    kind : {"mc", "empirical"}
        Sampled targets from the model, or the data's own targets.
    mc_samples : int
        Targets sampled per data point (``kind="mc"``).
    seed : int
        Key of the samples: batch ``i`` uses ``jax.random.fold_in(PRNGKey(seed), i)``,
        so every product sees the same samples (one fixed matrix).
    """

    def __init__(self, model_fn: Callable[..., Any], loss_fn_on_outputs: Any, params: Any, data: Any, *,
                 kind: str = "mc", mc_samples: int = 1, seed: int = 0, **kwargs: Any) -> None:
        if kind not in ("mc", "empirical"):
            raise ValueError(f"kind: expected 'mc' or 'empirical', got {kind!r}")
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"mc_samples: expected a positive int, got {mc_samples!r}")
        name, _ = resolve_loss(loss_fn_on_outputs)
        if kind == "mc" and name is None:
            raise ValueError("kind='mc' samples targets from the model: loss_fn_on_outputs must be "
                             "'cross_entropy' or 'mse'")
        self.kind, self.mc_samples, self.key = kind, mc_samples, jax.random.PRNGKey(seed)
        super().__init__(model_fn, loss_fn_on_outputs, params, data, **kwargs)

    def _batch_matmat(self, flat: Any, batch: tuple, V: Any, index: Any) -> Any:
        X, y = batch[0], batch[1]
        B = X.shape[0]
        out, vjp = jax.vjp(lambda p: self._outputs(p, X), flat)
        if self.kind == "mc":
            assert self.loss_name is not None
            G = sample_output_gradients(self.loss_name, out, jax.random.fold_in(self.key, index), self.mc_samples)
        else:  # per-sample loss = B * (batch-mean loss restricted to that sample)
            per = jax.vmap(lambda o, t: jax.grad(lambda oo: self.out_loss(oo[None], t[None]))(o))(out, y)
            G = per[None]
        S = G.shape[0]

        def fisher(v: Any) -> Any:
            Jv = jax.jvp(lambda p: self._outputs(p, X), (flat,), (v.astype(flat.dtype),))[1]
            coef = jnp.sum((G * Jv[None]).reshape(S, B, -1), axis=-1)  # g_sn . (J v)_n
            return vjp(jnp.sum(coef[..., None] * G.reshape(S, B, -1), axis=0).reshape(out.shape))[0] / (B * S)

        return jax.vmap(fisher, in_axes=1, out_axes=1)(V)
