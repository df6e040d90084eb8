r"""Generalized Gauss-Newton and Fisher matrices of a JAX model over a data set.

With ``z_b = model_fn(params, inputs_b)`` the outputs of batch ``b``, ``J_b`` their
Jacobian in ``theta`` and ``S_b(z), Z_b`` the loss's sum and normalizer
(:mod:`specop.curvature._core`, :mod:`specop.curvature.jax._losses`):

GGN (Schraudolph, "Fast curvature matrix-vector products for second-order gradient
descent", Neural Computation 14, 2002):

.. math::

    G = \frac{\sum_b J_b^T \, \nabla^2_z S_b \, J_b}{\sum_b Z_b},

applied as ``vjp(H jvp(v))`` with the output Hessian by autodiff (exact for any loss).

Fisher (Martens 2020, Sec. 5 and 9.2; Kunstner, Balles & Hennig, "Limitations of the
empirical Fisher approximation", NeurIPS 2019), over the loss's terms ``n`` (positions
for per-token cross-entropy, samples otherwise) with weights ``w_n``:

.. math::

    F_{emp} = \frac{1}{\sum_b Z_b} \sum_n w_n\, g_n g_n^T, \qquad
    F_{mc} = \frac{1}{\sum_b Z_b} \sum_n \frac{a_n}{S} \sum_{s=1}^S J_n^T r_{ns} r_{ns}^T J_n,

with ``g_n`` the gradient of the unweighted term loss ``l_n`` at the data's targets
(``kind="empirical"``), and ``r_{ns}`` the output gradient at a target sampled from the
model (``kind="mc"``, ``S = mc_samples``), whose expectation is the GGN for the
cross-entropy and the MSE. The draws of sample ``j`` (global index over the data set,
in data order) are a pure function of ``(seed, j)`` (counter-based Threefry, see
:func:`~specop.curvature.jax._losses.uniform`): one fixed matrix for any batching.
(``sum_b Z_b`` is 1 for a summed loss.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from specop.curvature._core import BatchLoss
from specop.curvature.jax._batches import Batch
from specop.curvature.jax._losses import resolve_loss
from specop.curvature.jax._model import ModelLoss
from specop.curvature.jax.base import JaxCurvatureOperator, Theta

__all__ = ["GGNOperator", "FisherOperator"]


class GGNOperator(JaxCurvatureOperator):
    """GGN ``sum_b J_b^T (d^2 S_b / dz^2) J_b / sum_b Z_b``.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(params, inputs) -> outputs`` with the samples on axis 0.
    loss_fn_on_outputs : {"cross_entropy", "mse"}, CrossEntropyLoss, MSELoss or callable
        A built-in loss (see :mod:`specop.curvature.jax._losses`), or
        ``loss(outputs, targets)`` returning the batch mean, ``(sum, normalizer)``, or
        ``(value, aux)`` with ``has_aux=True``.
    params, data : see :class:`~specop.curvature.jax.base.JaxCurvatureOperator`.
    inputs, targets : None, int, str or callable
        What the model and the loss see of a batch (default ``batch[0]``, ``batch[1]``).
    mask : None, int, str or callable
        Per-term weights for the built-in losses (a 0/1 token mask).
    output : None, int, str or callable
        The part of tuple or dict outputs the loss sees.
    has_aux : bool
        A callable loss returns ``(value, aux)``.
    """

    def __init__(self, model_fn: Callable[..., Any], loss_fn_on_outputs: Any, params: Any, data: Any, *,
                 inputs: Any = None, targets: Any = None, mask: Any = None, output: Any = None,
                 has_aux: bool = False, **kwargs: Any) -> None:
        if not hasattr(self, "_init"):
            self._init = ((model_fn, loss_fn_on_outputs, params, data),
                          dict(inputs=inputs, targets=targets, mask=mask, output=output, has_aux=has_aux, **kwargs))
        self.model = ModelLoss(model_fn, loss_fn_on_outputs, inputs=inputs, targets=targets, mask=mask,
                               output=output, has_aux=has_aux)
        self.model_fn, self.out_loss = model_fn, self.model.loss
        super().__init__(params, data, **kwargs)

    def _outputs(self, flat: Any, theta: Theta, data: Any) -> Any:
        return self.model.outputs(self.params(Theta(flat, theta.fixed)), data)

    def _batch_loss(self, theta: Theta, batch: Batch) -> BatchLoss:
        return self.model.batch_loss(self.params(theta), batch.data)

    def _samples(self, theta: Theta, data: Any) -> int:
        return self.model.samples(lambda f: self.params(Theta(f, theta.fixed)), theta.flat, data)

    def _invalid(self, theta: Theta, data: Any) -> Any:
        return self.out_loss.invalid(self.model.outputs(self.params(theta), data), self.model.targets(data))

    def _batch_matmat(self, theta: Theta, batch: Batch, V: Any, aux: Any = None) -> Any:
        f = lambda flat: self._outputs(flat, theta, batch.data)  # noqa: E731
        z, vjp = jax.vjp(f, theta.flat)
        loss_grad = jax.grad(lambda zz: self.model.batch_loss_of(zz, batch.data).total)

        def ggn(v: Any) -> Any:
            Jv = jax.jvp(f, (theta.flat,), (v.astype(theta.flat.dtype),))[1]
            return vjp(jax.jvp(loss_grad, (z,), (Jv,))[1])[0]

        return jax.vmap(ggn, in_axes=1, out_axes=1)(V)


class FisherOperator(GGNOperator):
    """Fisher matrix: Monte-Carlo (``kind="mc"``) or empirical (``kind="empirical"``).

    Parameters
    ----------
    model_fn, loss_fn_on_outputs, params, data : see :class:`GGNOperator`
        ``kind="mc"`` needs a built-in loss (``"cross_entropy"``, ``"mse"``).
    kind : {"mc", "empirical"}
        Targets sampled from the model, or the data's own targets.
    mc_samples : int
        Targets sampled per term (``kind="mc"``).
    seed : int
        Draws of the sample with global index ``j`` are a pure function of ``(seed, j)``:
        every product sees the same draws, whatever the batching and the dtype.
    """

    def __init__(self, model_fn: Callable[..., Any], loss_fn_on_outputs: Any, params: Any, data: Any, *,
                 kind: str = "mc", mc_samples: int = 1, seed: int = 0, **kwargs: Any) -> None:
        self._init = ((model_fn, loss_fn_on_outputs, params, data),
                      dict(kind=kind, mc_samples=mc_samples, seed=seed, **kwargs))
        if kind not in ("mc", "empirical"):
            raise ValueError(f"kind: expected 'mc' or 'empirical', got {kind!r}")
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"mc_samples: expected a positive int, got {mc_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        if kind == "mc" and not resolve_loss(loss_fn_on_outputs).mc:
            raise ValueError("kind='mc' samples targets from the model: loss_fn_on_outputs must be "
                             "'cross_entropy' or 'mse' (or CrossEntropyLoss / MSELoss)")
        self.kind, self.mc_samples, self.seed = kind, mc_samples, int(seed)
        self.key = np.asarray(jax.random.PRNGKey(self.seed))  # a host constant of the compiled products
        super().__init__(model_fn, loss_fn_on_outputs, params, data, **kwargs)

    def _batch_aux(self, theta: Theta, batch: Batch) -> Any:
        """The scores ``R`` and coefficients ``a`` of the batch (random draws compile here, once a shape)."""
        z = jax.lax.stop_gradient(self.model.outputs(self.params(theta), batch.data))
        t, m = self.model.targets(batch.data), self.model.mask(batch.data)
        if self.kind == "empirical":
            return self.out_loss.empirical(z, t, m)
        index = batch.offset + jnp.arange(z.shape[0], dtype=jnp.int32)
        return self.out_loss.sample(z, t, m, self.key, index, self.mc_samples)

    def _batch_matmat(self, theta: Theta, batch: Batch, V: Any, aux: Any = None) -> Any:
        f = lambda flat: self._outputs(flat, theta, batch.data)  # noqa: E731
        z, vjp = jax.vjp(f, theta.flat)
        R, coef = aux
        E = R.shape[-1]

        def fisher(v: Any) -> Any:
            Jv = jax.jvp(f, (theta.flat,), (v.astype(theta.flat.dtype),))[1].reshape(-1, E)
            c = jnp.einsum("sne,ne->sn", R, Jv) * coef  # einsum: XLA's CPU mul-reshape-sum form is wrong under vmap
            return vjp(jnp.einsum("sn,sne->ne", c, R).reshape(z.shape))[0]

        return jax.vmap(fisher, in_axes=1, out_axes=1)(V)
