"""The Fisher information matrix (Monte-Carlo or empirical) as a linear operator.

Both kinds are ``(1/T) sum_t J_t^T (1/S sum_s r_ts r_ts^T) J_t`` over the ``T`` terms of
the mean loss, applied as ``J^T (R (R^T (J v))))`` with ``torch.func.vjp`` (``J v`` reverse over reverse)
(Martens, "New insights and perspectives on the natural gradient method", JMLR 2020,
sec. 9; Kunstner, Hennig & Balles, "Limitations of the empirical Fisher
approximation", NeurIPS 2019):

* ``kind="mc"``: ``r = d loss / dz`` at ``S = mc_samples`` targets drawn from the model's
  predictive distribution (categorical for cross-entropy, Gaussian for MSE); its
  expectation is the GGN. Draws are seeded per sample (see ``_losses.mc_scores``).
* ``kind="empirical"``: ``r_n`` the gradient of the per-sample loss at the true target,
  from ``torch.func.vmap`` over the samples; ``J_n^T r_n = g_n``, so
  ``F = (1/N) sum_n g_n g_n^T``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from specop.curvature.torch._losses import empirical_scores, mc_scores
from specop.curvature.torch.base import CurvatureOperator

__all__ = ["FisherOperator"]


class FisherOperator(CurvatureOperator):
    r"""Fisher ``F = (1/N) \sum_n E_{\hat y \sim p(y|f_n)}[g_n(\hat y) g_n(\hat y)^T]`` (MC) or empirical.

    Parameters
    ----------
    model, loss_fn, data, params, mode, dtype, timeout, max_columns
        As for :class:`~specop.curvature.torch.base.CurvatureOperator`.
    kind : {"mc", "empirical"}
        ``"mc"``: Monte-Carlo Fisher with ``mc_samples`` targets per term drawn from
        the model (cross-entropy: per position; MSE: per sample, ``N(f, D/2 I)``);
        ``"empirical"``: ``(1/N) sum_n g_n g_n^T`` of the per-sample gradients at the data's targets.
    mc_samples : int
        Targets drawn per term (``kind="mc"``).
    seed : int
        Key of the target draws. The draws of sample ``n`` depend only on ``(seed, n)``
        with ``n`` its index in the data order (rank 0's shard first, then rank 1's, ...),
        so the operator does not change with the batch size or the number of processes,
        is the same in every product, but changes if a loader reshuffles.

    Notes
    -----
    The MC Fisher is an unbiased estimate of the exact Fisher, which equals the GGN
    for cross-entropy and MSE; its error decreases like ``1 / sqrt(mc_samples)``.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Any], data: Any,
                 params: Sequence[Any] | None = None, mode: str = "eval", dtype: Any = None, *,
                 kind: str = "mc", mc_samples: int = 1, seed: int = 0, timeout: float | None = None,
                 max_columns: int | None = None) -> None:
        if kind not in ("mc", "empirical"):
            raise ValueError(f"kind: expected 'mc' or 'empirical', got {kind!r}")
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"mc_samples: expected a positive int, got {mc_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        super().__init__(model, loss_fn, data, params, mode, dtype, timeout=timeout, max_columns=max_columns)
        if kind == "mc" and self._kind not in ("ce", "mse"):
            mc_scores(self._kind, torch.zeros(1, 1), 1, 0, 0)  # raises the explanatory error
        self.kind, self.mc_samples, self.seed = kind, mc_samples, seed
        self._rng_seed = seed

    def _matmat_batch(self, X: torch.Tensor, y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        theta = self._theta()

        def f(th: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self._forward(th, X)

        Z, vjp_fn = torch.func.vjp(f, theta)[:2]
        if self.kind == "mc":
            R, dim, units = mc_scores(self._kind, Z, self.mc_samples, self.seed, self._sample_offset)
        else:
            R, dim, units = empirical_scores(self.loss_fn, Z, y), None, Z.shape[0]
        S = R.shape[0]
        # J v as the vjp of u -> J^T u (reverse over reverse, as in the GGN: no forward-mode pass)
        jv_fn = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(Z))[1]

        def col(v: torch.Tensor) -> torch.Tensor:
            JV = jv_fn(self._unflat(v))[0]
            prod = R * JV
            if dim is None:  # a term is a whole sample: contract all non-batch axes
                a = prod.reshape(S, Z.shape[0], -1).sum(-1).reshape(S, Z.shape[0], *[1] * (Z.ndim - 1))
            else:
                a = prod.sum(dim=dim, keepdim=True)
            return self._flat(vjp_fn((a * R).sum(0) / (S * units))[0])

        return self._columns(col, M)
