r"""The Fisher information matrix (Monte-Carlo or empirical) as a linear operator.

Both kinds are ``F = sum_b J_b^T (sum_n a_n r_n r_n^T) J_b / sum_b Z_b`` over the terms ``n``
of each batch's loss (positions for cross-entropy and NLL, samples otherwise), with scores
``r_n`` and coefficients ``a_n`` from :mod:`._losses`, applied as ``J^T (R a (R^T (J V)))``
(``J V`` reverse over reverse, as in the GGN) (Martens, "New insights and perspectives on
the natural gradient method", JMLR 2020, sec. 9; Kunstner, Hennig & Balles, "Limitations
of the empirical Fisher approximation", NeurIPS 2019):

* ``kind="mc"``: ``r = d(term loss)/dz`` at ``S = mc_samples`` targets drawn from the model's
  predictive distribution (categorical ``softmax(z_n)`` per position for cross-entropy,
  ``N(z, I/2)`` per output entry for MSE), ``a_n = c_n / S`` with ``c_n`` the term's factor in
  the output Hessian (class weight, label smoothing; 0 for an ignored target). Its
  expectation is the GGN. Draw ``s`` of sample ``j`` is a pure function of ``(seed, j, s)``
  (``j`` the sample's global index), so the matrix does not depend on the batching, the
  number of processes or the product.
* ``kind="empirical"``:

  .. math::

      F_{emp} = \frac{1}{\sum_b Z_b} \sum_n w_n\, g_n g_n^T, \qquad
      g_n = \nabla_\theta \ell_n,

  with ``S_b = sum_n w_n l_n``: ``l_n`` the *unweighted* loss of term ``n`` at its data
  target and ``w_n`` its weight (class weight of the target, 0 where ignored; for the
  sample-term losses the sample's share of the mean's normalizer). For a plain mean over
  ``N`` samples this is ``(1/N) sum_n g_n g_n^T``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from specop.curvature.torch._linear import Linearization
from specop.curvature.torch._losses import Scores
from specop.curvature.torch.base import Batch, Contribution, CurvatureOperator

__all__ = ["FisherOperator"]


def _outer(s: Scores, JV: torch.Tensor) -> torch.Tensor:
    """``sum_n a_n r_n <r_n, (J v)_n>`` for every column: ``(k, *Z.shape)`` from ``JV`` ``(k, *Z.shape)``."""
    R, k = s.R, JV.shape[0]
    S, B = R.shape[0], R.shape[1]
    if s.class_dim is None:  # a term is a sample: contract all of its entries
        r, jv = R.reshape(S, B, -1), JV.reshape(k, B, -1)
        a = torch.einsum("sbd,kbd->skb", r, jv) * s.coef
        return torch.einsum("skb,sbd->kbd", a, r).reshape(JV.shape)
    d = s.class_dim  # a term is a position: contract the class axis only
    C = R.shape[1 + d]
    r = R.movedim(1 + d, -1).reshape(S, B, -1, C)
    jv = JV.movedim(1 + d, -1).reshape(k, B, -1, C)
    a = torch.einsum("sbxc,kbxc->skbx", r, jv) * s.coef.reshape(B, -1)
    out = torch.einsum("skbx,sbxc->kbxc", a, r)
    return out.reshape(k, *R.movedim(1 + d, -1).shape[1:]).movedim(-1, 1 + d)


class FisherOperator(CurvatureOperator):
    r"""Fisher ``F = \sum_b J_b^T (\sum_n a_n r_n r_n^T) J_b / \sum_b Z_b``, Monte-Carlo or empirical.

    Parameters
    ----------
    model, loss_fn, data, params, mode, dtype
        As for :class:`~specop.curvature.torch.base.CurvatureOperator` (and its keyword
        arguments ``forward``, ``output``, ``targets``, ``loss_on_batch``, ``num_batches``,
        ``timeout``, ``max_columns``).
    kind : {"mc", "empirical"}
        ``"mc"``: Monte-Carlo Fisher with ``mc_samples`` targets per term drawn from the
        model (cross-entropy: per position; MSE: per sample); ``"empirical"``: the weighted
        mean of the per-term gradients' outer products at the data's targets (module docstring).
    mc_samples : int
        Targets drawn per term (``kind="mc"``).
    seed : int
        Key of the target draws. The draws of sample ``j`` depend only on ``(seed, j)``
        with ``j`` its index in the data order (rank 0's shard first, then rank 1's, ...),
        so the operator does not change with the batch size or the number of processes,
        is the same in every product, but changes if a loader reshuffles. (Dropout masks
        in train mode do not depend on it: every operator sees the same masks.)

    Notes
    -----
    The MC Fisher is an unbiased estimate of the exact Fisher, which equals the GGN for
    cross-entropy (with class weights, ``ignore_index`` and label smoothing) and MSE; its
    error decreases like ``1 / sqrt(mc_samples)``.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Any], data: Any,
                 params: Sequence[Any] | None = None, mode: str = "eval", dtype: Any = None, *,
                 kind: str = "mc", mc_samples: int = 1, seed: int = 0, **kwargs: Any) -> None:
        if kind not in ("mc", "empirical"):
            raise ValueError(f"kind: expected 'mc' or 'empirical', got {kind!r}")
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"mc_samples: expected a positive int, got {mc_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        super().__init__(model, loss_fn, data, params, mode, dtype, **kwargs)
        if kind == "mc" and not self._loss.has_likelihood:
            raise self._loss.no_likelihood()
        self.kind, self.mc_samples, self.seed = kind, mc_samples, seed

    @property
    def _random(self) -> bool:
        return self.kind == "mc" or self.mode == "train"

    def _matmat_batch(self, batch: Batch, M: torch.Tensor) -> Contribution:
        theta = self._theta()
        Z, t, bl = self._evaluate(theta, batch)
        lin = Linearization(theta, Z, self._batching)
        if self.kind == "mc":
            scores = self._loss.mc(Z, t, self.mc_samples, self.seed, batch.offset)
        else:
            scores = self._loss.empirical(Z, t)

        def block(B: torch.Tensor) -> torch.Tensor:
            return self._join(lin.jtv(_outer(scores, lin.jv(self._split(B)))))

        return Contribution(self._in_chunks(block, M), bl.normalizer, Z.shape[0])
