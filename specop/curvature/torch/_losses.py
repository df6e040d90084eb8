"""Loss functions: recognition, output Hessians and sampling from the model's likelihood.

Closed forms for the mean-reduced losses, with ``Z`` the model outputs of a batch
and ``m`` the number of terms the mean runs over:

* cross-entropy (``Z`` of shape ``(B, C, ...)``, ``m = Z.numel() / C``):
  ``d^2 L / dz^2 = (diag(p) - p p^T) / m`` per position, ``p = softmax(z)``;
* mean squared error (``m = Z.numel()``, the mean runs over output dimensions too):
  ``d^2 L / dZ^2 = (2 / m) I``.

Other losses get their output Hessian by forward-over-reverse autodiff. The
likelihood each closed-form loss is the negative log of, used by the Monte-Carlo
Fisher (Martens, "New insights and perspectives on the natural gradient method",
JMLR 2020, sec. 9.2): a categorical distribution ``softmax(z)`` for cross-entropy, a
Gaussian ``N(z, (D / 2) I)`` per sample (``D`` outputs) for MSE, whose score
has ``E[r r^T] = (2 / D) I``, so that the exact Fisher equals the GGN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

__all__ = ["loss_kind", "output_hvp", "mc_scores", "empirical_scores"]


def _reduction(loss_fn: Any) -> str | None:
    if isinstance(loss_fn, nn.modules.loss._Loss):
        return loss_fn.reduction
    if isinstance(loss_fn, functools.partial):
        return loss_fn.keywords.get("reduction", "mean")
    return None


def loss_kind(loss_fn: Callable[..., Any]) -> str:
    """``"ce"``, ``"mse"`` or ``"other"``; ``ValueError`` for a non-mean reduction.

    Recognised: ``nn.CrossEntropyLoss()`` without class weights, ``nn.MSELoss()``,
    ``F.cross_entropy``, ``F.mse_loss`` (also wrapped in ``functools.partial``).
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
    red = _reduction(loss_fn)
    if red is not None and red != "mean":
        raise ValueError(
            f"loss_fn: reduction={red!r} is not supported; the operators are defined on the mean loss, "
            "use reduction='mean' (the curvature of the summed loss is N times the operator)"
        )
    base = loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn
    extra = loss_fn.keywords if isinstance(loss_fn, functools.partial) else {}
    if isinstance(base, nn.CrossEntropyLoss) or base is F.cross_entropy:
        weight = getattr(base, "weight", None) if base is not F.cross_entropy else extra.get("weight")
        return "ce" if weight is None else "other"
    if isinstance(base, nn.MSELoss) or base is F.mse_loss:
        return "mse"
    return "other"


def output_hvp(kind: str, loss_fn: Callable[..., Any], Z: torch.Tensor, y: torch.Tensor) -> Callable[..., Any]:
    """``U -> (d^2 L / dZ^2) U`` for the batch-mean loss ``L(Z, y)`` (``U`` shaped like ``Z``)."""
    Z = Z.detach()
    if kind == "ce":
        p = torch.softmax(Z, dim=1 if Z.ndim > 1 else 0)
        m = Z.numel() // Z.shape[1] if Z.ndim > 1 else 1
        dim = 1 if Z.ndim > 1 else 0

        def ce(U: torch.Tensor) -> torch.Tensor:
            return (p * U - p * (p * U).sum(dim=dim, keepdim=True)) / m

        return ce
    if kind == "mse":
        c = 2.0 / Z.numel()
        return lambda U: c * U
    grad_fn = torch.func.grad(lambda out: loss_fn(out, y))
    return lambda U: torch.func.jvp(grad_fn, (Z,), (U,))[1]


def _uniforms(seed: int, offset: int, n: int, per_sample: int) -> np.ndarray:
    """Uniforms in (0, 1), shape ``(n, per_sample)``; row ``i`` depends only on ``(seed, offset + i)``.

    Philox (Salmon et al., SC 2011) keyed by ``seed``; sample ``j`` owns counter
    blocks ``[j w, (j + 1) w)`` with ``w = ceil(per_sample / 4)`` (4 draws per block).
    """
    w = -(-per_sample // 4)
    bitgen = np.random.Philox(key=seed)
    bitgen.advance(offset * w)
    raw = bitgen.random_raw(n * w * 4).reshape(n, w * 4)[:, :per_sample]
    return ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def mc_scores(kind: str, Z: torch.Tensor, samples: int, seed: int, offset: int) -> tuple[torch.Tensor, int | None, int]:
    """Scores ``r = d loss_term / dz`` at targets drawn from the model, with their contraction layout.

    Returns ``(R, dim, units)``: ``R`` of shape ``(samples, *Z.shape)``; a term's score
    is ``R`` restricted to one index of every axis but ``dim`` (``dim=None``: a term is
    a whole sample); ``units`` is the number of terms in the batch mean.

    Cross-entropy: a term is one position ``(b, ...)``, ``y ~ softmax(z)``, ``r = p - e_y``.
    MSE: a term is one sample, ``y ~ N(z, (D / 2) I)``, ``r = (2 / D)(z - y) = -sqrt(2 / D) eps``.
    Sample ``i`` of the batch uses global sample index ``offset + i``, so the draws depend
    on the seed and the sample's position in the data set, not on the batching or the
    number of processes. In both cases ``E[r r^T]`` is the term's output Hessian.
    """
    Z = Z.detach()
    B = Z.shape[0]
    if kind == "ce" and Z.ndim >= 2:
        probs = torch.softmax(Z, dim=1).movedim(1, -1)  # (B, ..., C)
        pos = probs.shape[1:-1].numel()
        u = _uniforms(seed, offset, B, samples * pos).reshape(B, samples, *probs.shape[1:-1])
        u_t = torch.as_tensor(u, device=Z.device, dtype=probs.dtype).movedim(1, 0)  # (S, B, ...)
        cdf = torch.cumsum(probs, dim=-1).expand(samples, *probs.shape).contiguous()
        idx = torch.searchsorted(cdf, (u_t.unsqueeze(-1) * cdf[..., -1:]).contiguous()).clamp_(max=probs.shape[-1] - 1)
        onehot = torch.zeros_like(cdf).scatter_(-1, idx, 1.0)
        return (probs.unsqueeze(0) - onehot).movedim(-1, 2), 2, B * pos
    if kind == "mse":
        D = Z[0].numel()
        half = -(-samples * D // 2)
        u = _uniforms(seed, offset, B, 2 * half)
        r, t = np.sqrt(-2.0 * np.log(u[:, :half])), 2.0 * np.pi * u[:, half:]
        eps = np.concatenate([r * np.cos(t), r * np.sin(t)], axis=1)[:, : samples * D]  # Box-Muller
        eps_t = torch.as_tensor(eps, device=Z.device, dtype=Z.dtype).reshape(B, samples, *Z.shape[1:])
        return -math.sqrt(2.0 / D) * eps_t.movedim(1, 0), None, B
    raise ValueError("FisherOperator(kind='mc') needs a loss with a known likelihood: nn.CrossEntropyLoss "
                     "(without class weights) or nn.MSELoss (or F.cross_entropy / F.mse_loss); "
                     "use kind='empirical' or GGNOperator for other losses")


def empirical_scores(loss_fn: Callable[..., Any], Z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample output gradients ``r_n = d loss_fn(z_n[None], y_n[None]) / dz_n``, shape ``(1, *Z.shape)``.

    Computed with ``torch.func.vmap`` over the samples; ``J_n^T r_n`` is the per-sample
    parameter gradient ``g_n`` (Kunstner et al., "Limitations of the empirical Fisher
    approximation", NeurIPS 2019, eq. 3).
    """
    def one(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return loss_fn(z.unsqueeze(0), t.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one))(Z.detach(), y).unsqueeze(0)
