r"""Losses: each batch's sum ``S_b`` and normalizer ``Z_b``, the output Hessian of ``S_b``, per-term scores.

Every loss is read as ``S_b = sum_n w_n l_n`` over its *terms* ``n`` with a normalizer
``Z_b`` that does not depend on the parameters (see :mod:`specop.curvature._core`);
``Z_b`` is exactly what torch's ``reduction="mean"`` divides by, and ``None`` for
``reduction="sum"``. ``reduction="none"`` is refused. For the built-in torch losses:

==========================  ===========================  ==============================================
loss                        terms ``n``                   ``Z_b`` (mean)
==========================  ===========================  ==============================================
cross-entropy, class index  positions (``(B, C, d...)``)  ``sum_n w_{y_n}`` over ``y_n != ignore_index``
cross-entropy, soft target  positions                     number of positions ``B d...``
NLL                         positions                     ``sum_n w_{y_n}`` over ``y_n != ignore_index``
MSE, L1 (``weight=`` nu)     samples (rows)                ``sum nu`` (number of elements without nu)
BCE(WithLogits), Huber,     samples                       number of elements
SmoothL1
KL divergence               samples                       ``B`` (``batchmean``), elements (``mean``)
==========================  ===========================  ==============================================

**Output Hessians** of ``S_b`` in closed form: cross-entropy, per position
``c_n (diag p_n - p_n p_n^T)`` with ``p_n = softmax(z_n)`` and (label smoothing ``eps``,
``C`` classes) ``c_n = (1 - eps) w_{y_n} + (eps / C) sum_c w_c`` for a kept class index,
``0`` for an ignored one, ``c_n = sum_c w_c ((1 - eps) q_nc + eps / C)`` for soft targets
``q_n``; MSE ``2 diag(nu)``; NLL and KL divergence ``0`` (linear in their input). Every other
loss by autodiff (double backward of ``S_b`` in the outputs).

**Scores** ``r`` and coefficients ``a_n`` with ``F_b = J^T (sum_n a_n r_n r_n^T) J``:

* empirical: ``r_n = d(w_n l_n)/dz`` at the data's targets, ``a_n = 1 / w_n`` (so each term
  adds ``w_n g_n g_n^T`` with ``g_n`` the gradient of the *unweighted* term loss ``l_n``; a
  term with ``w_n = 0`` adds nothing). ``w_n`` is ``w_{y_n}`` (0 if ignored) for class
  targets, 1 for soft targets, the sample's ``sum nu`` (mean) or 1 (sum, ``batchmean``) for
  the sample-term losses. A user loss is called on one sample at a time.
* Monte Carlo (Martens, "New insights and perspectives on the natural gradient method",
  JMLR 2020, sec. 9.2): cross-entropy ``r = p_n - e_{\hat y}``, ``\hat y ~ softmax(z_n)``,
  ``a_n = c_n / S``; MSE ``r = sqrt(2 nu) eps``, ``eps ~ N(0, I)`` per sample, ``a_n = 1 / S``.
  ``E[r r^T]`` is the term's output Hessian, so the expectation is the GGN. Draw ``s`` of
  sample ``j`` is a pure function of ``(seed, j, s)`` (:mod:`._philox`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn

from specop.curvature._core import BatchLoss, as_batch_loss
from specop.curvature.torch import _philox
from specop.curvature.torch._batches import map_tensors

__all__ = ["Loss", "Builtin", "Scores"]

@dataclass(frozen=True)
class Scores:
    """Per-term scores ``R`` (``(S, *Z.shape)``) and coefficients ``coef`` of ``sum_n a_n r_n r_n^T``.

    ``class_dim``: terms are positions, a term's entries run along this axis of ``Z``
    (``coef`` has ``Z``'s shape without it); ``None``: terms are samples (``coef``: ``(B,)``).
    """

    R: torch.Tensor
    class_dim: int | None
    coef: torch.Tensor


def _batched(out: torch.Tensor, inp: torch.Tensor, U: torch.Tensor, lead: bool) -> torch.Tensor:
    """``d<out, U>/d inp`` for ``U`` with (``lead``) or without a leading column axis."""
    if not lead:
        return torch.autograd.grad(out, inp, U, retain_graph=True)[0]
    try:
        return torch.autograd.grad(out, inp, U, retain_graph=True, is_grads_batched=True)[0]
    except Exception:  # not batchable: one pass per column (errors re-raise there)
        return torch.stack([torch.autograd.grad(out, inp, u, retain_graph=True)[0] for u in U])


class Loss:
    """A loss the operators do not know: ``loss_fn(outputs, targets)`` -> mean, ``(sum, normalizer)`` or
    :class:`~specop.curvature._core.BatchLoss`; a scalar is the mean over the ``B`` samples."""

    name = "user"
    has_likelihood = False

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def batch_loss(self, Z: torch.Tensor, t: Any) -> BatchLoss:
        """``(S_b, Z_b)``: ``S_b`` differentiable in ``Z``, ``Z_b`` a detached 0-d tensor or ``None``."""
        b = as_batch_loss(self._call(Z, t), Z.shape[0])
        if not isinstance(b.total, torch.Tensor):
            raise ValueError(f"loss_fn: expected a torch scalar, got {type(b.total).__name__}")
        norm = b.normalizer
        if norm is not None:
            norm = torch.as_tensor(norm.detach() if isinstance(norm, torch.Tensor) else norm,
                                   dtype=Z.dtype, device=Z.device)
        return BatchLoss(b.total, norm)

    def _call(self, Z: torch.Tensor, t: Any) -> Any:
        return self.fn(Z, t)

    def output_hvp(self, Z: torch.Tensor, t: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """``U -> (d^2 S_b / dZ^2) U``; ``U`` shaped like ``Z`` with an optional leading column axis."""
        Zd = Z.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.batch_loss(Zd, t).total, Zd, create_graph=True)
        if not g.requires_grad:  # S_b linear in Z
            return torch.zeros_like
        return lambda U: _batched(g, Zd, U, U.ndim > Z.ndim)

    def empirical(self, Z: torch.Tensor, t: Any) -> Scores:
        """Per-sample ``d S_n / dz_n`` and ``1 / Z_n`` of the loss called on each sample alone.

        The targets' tensors whose first dimension is ``B`` are split with the outputs; the
        others are passed whole. Vmapped; one sample at a time where vmap cannot run.
        """
        B = Z.shape[0]

        def term(z1: torch.Tensor, t1: Any) -> tuple[torch.Tensor, torch.Tensor]:
            b = self.batch_loss(z1, t1)
            return b.total, (torch.ones((), dtype=z1.dtype, device=z1.device) if b.normalizer is None
                             else b.normalizer)

        try:
            split = pytree.tree_map(lambda x: _batched_leaf(x, B), t)
            dims = pytree.tree_map(lambda s: 0 if s else None, split)

            def one(z: torch.Tensor, tt: Any) -> tuple[torch.Tensor, torch.Tensor]:
                return term(z.unsqueeze(0), pytree.tree_map(lambda x, s: x.unsqueeze(0) if s else x, tt, split))

            R, norm = torch.func.vmap(torch.func.grad(one, has_aux=True), in_dims=(0, dims))(Z.detach(), t)
        except Exception:  # not vmappable (or a container vmap cannot walk): one sample at a time
            rows, norms = [], []
            for n in range(B):
                z = Z.detach()[n:n + 1].requires_grad_(True)
                with torch.enable_grad():
                    s, zn = term(z, map_tensors(t, functools.partial(_row, n=n, B=B)))
                    rows.append(torch.autograd.grad(s, z)[0][0])
                norms.append(zn)
            R, norm = torch.stack(rows), torch.stack(norms)
        return Scores(R.unsqueeze(0), None, _inverse(norm))

    def no_likelihood(self) -> ValueError:
        return ValueError(f"FisherOperator(kind='mc') needs a loss with a known likelihood: cross-entropy or MSE "
                          f"(nn.CrossEntropyLoss, nn.MSELoss, F.cross_entropy, F.mse_loss), got {self.name}; "
                          "use kind='empirical' or GGNOperator")

    def mc(self, Z: torch.Tensor, t: Any, samples: int, seed: int, offset: int) -> Scores:
        """Scores at targets drawn from the model (losses with a known likelihood only)."""
        raise self.no_likelihood()


def _row(x: torch.Tensor, n: int, B: int) -> torch.Tensor:
    return x[n:n + 1] if _batched_leaf(x, B) else x


def _batched_leaf(x: Any, B: int) -> bool:
    return isinstance(x, torch.Tensor) and x.ndim > 0 and x.shape[0] == B


def _inverse(w: torch.Tensor) -> torch.Tensor:
    """``1 / w`` where ``w > 0``, else 0 (a zero-weight term adds nothing)."""
    return torch.where(w > 0, 1.0 / torch.where(w > 0, w, torch.ones_like(w)), torch.zeros_like(w))


class Builtin(Loss):
    """A torch loss (module or functional): ``fn(Z, t, **options, reduction=...)``."""

    terms_are_positions = False

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any], reduction: str,
                 module: nn.Module | None = None, names: tuple[str, ...] = (),
                 check: Callable[[str], str] = str) -> None:
        super().__init__(fn)
        self.name = fn.__name__
        self._options, self._reduction, self._module = options, reduction, module
        self._names, self._check = names, check

    @property
    def options(self) -> dict[str, Any]:
        """The loss's options (``weight``, ``ignore_index``, ...), read from the module on every call."""
        if self._module is None:
            return self._options
        return {k: getattr(self._module, k) for k in self._names if hasattr(self._module, k)}

    @property
    def reduction(self) -> str:
        if self._module is None:
            return self._reduction
        return self._check(str(self._module.reduction))

    def _opts(self, Z: torch.Tensor) -> dict[str, Any]:
        return {k: (v.to(device=Z.device, dtype=Z.dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
                    else v) for k, v in self.options.items() if v is not None}

    def terms(self, Z: torch.Tensor, t: Any, reduction: str) -> torch.Tensor:
        return self.fn(Z, t, **self._opts(Z), reduction=reduction)

    def batch_loss(self, Z: torch.Tensor, t: Any) -> BatchLoss:
        S = self.terms(Z, t, "sum")
        return BatchLoss(S, None if self.reduction == "sum" else self.normalizer(Z, t).to(Z.dtype))

    def density(self, Z: torch.Tensor, t: Any) -> torch.Tensor:
        """Per-element share of the mean's normalizer (sample-term losses)."""
        shape = torch.broadcast_shapes(Z.shape, t.shape)
        return torch.ones(shape, dtype=Z.dtype, device=Z.device)

    def normalizer(self, Z: torch.Tensor, t: Any) -> torch.Tensor:
        if self.reduction == "batchmean":
            return torch.tensor(float(Z.shape[0]), dtype=Z.dtype, device=Z.device)
        return self.density(Z, t).sum()

    def empirical(self, Z: torch.Tensor, t: Any) -> Scores:
        Zd = Z.detach().requires_grad_(True)
        with torch.enable_grad():
            per = self.terms(Zd, t, "none")
            (R,) = torch.autograd.grad(per.sum(), Zd)
        if self.reduction in ("sum", "batchmean"):
            w = torch.ones(Z.shape[0], dtype=Z.dtype, device=Z.device)
        else:
            w = self.density(Z, t).reshape(Z.shape[0], -1).sum(1)
        return Scores(R.unsqueeze(0), None, _inverse(w))


class _Linear(Builtin):
    """NLL and KL divergence: linear in their input, so the output Hessian is zero."""

    def output_hvp(self, Z: torch.Tensor, t: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return torch.zeros_like


class _KLDiv(_Linear):
    pass


class _Classes(Builtin):
    """Cross-entropy (and NLL): terms are positions, normalized by the kept targets' class weights."""

    terms_are_positions = True

    def _index(self, Z: torch.Tensor, t: torch.Tensor) -> bool:
        if Z.ndim < 2:
            raise ValueError(f"loss_fn: {self.name} needs outputs of shape (B, C, ...), got {tuple(Z.shape)}; "
                             "add the batch dimension")
        return not t.is_floating_point()

    def _weights(self, Z: torch.Tensor) -> torch.Tensor:
        w = self.options.get("weight")
        C = Z.shape[1]
        return torch.ones(C, dtype=Z.dtype, device=Z.device) if w is None else w.to(Z.device, Z.dtype)

    def position_weights(self, Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``w_n``: the class weight of each kept position's target, 0 where ignored (soft targets: 1)."""
        if not self._index(Z, t):
            return torch.ones(t.shape[:1] + t.shape[2:], dtype=Z.dtype, device=Z.device)
        keep = t != self.options.get("ignore_index", -100)
        return self._weights(Z)[t.masked_fill(~keep, 0)] * keep

    def normalizer(self, Z: torch.Tensor, t: Any) -> torch.Tensor:
        return self.position_weights(Z, t).sum()

    def empirical(self, Z: torch.Tensor, t: Any) -> Scores:
        Zd = Z.detach().requires_grad_(True)
        with torch.enable_grad():
            (R,) = torch.autograd.grad(self.terms(Zd, t, "none").sum(), Zd)
        return Scores(R.unsqueeze(0), 1, _inverse(self.position_weights(Z, t)))


class _NLL(_Classes, _Linear):
    pass


class _CrossEntropy(_Classes):
    has_likelihood = True

    def scale(self, Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``c_n``: the factor of ``diag p - p p^T`` in each position's output Hessian."""
        eps, C = float(self.options.get("label_smoothing", 0.0)), Z.shape[1]
        w = self._weights(Z)
        if self._index(Z, t):
            keep = t != self.options.get("ignore_index", -100)
            return ((1 - eps) * w[t.masked_fill(~keep, 0)] + eps / C * w.sum()) * keep
        q = (1 - eps) * t + eps / C
        return (q * w.view(1, C, *[1] * (Z.ndim - 2))).sum(1)

    def output_hvp(self, Z: torch.Tensor, t: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        Z = Z.detach()
        p, c = torch.softmax(Z, dim=1), self.scale(Z, t).unsqueeze(1)
        cd = 1 - Z.ndim  # the class axis counted from the end: U may carry a leading column axis

        def hvp(U: torch.Tensor) -> torch.Tensor:
            pU = p * U
            return c * (pU - p * pU.sum(dim=cd, keepdim=True))

        return hvp

    def mc(self, Z: torch.Tensor, t: Any, samples: int, seed: int, offset: int) -> Scores:
        Z = Z.detach()
        probs = torch.softmax(Z, dim=1).movedim(1, -1)  # (B, ..., C)
        B, C = probs.shape[0], probs.shape[-1]
        pos = probs.shape[1:-1].numel()
        u = _philox.uniforms(seed, np.arange(offset, offset + B), samples, pos)  # (S, B, pos)
        u_t = torch.as_tensor(u, device=Z.device, dtype=probs.dtype).reshape(samples, *probs.shape[:-1], 1)
        cdf = torch.cumsum(probs, dim=-1).expand(samples, *probs.shape).contiguous()
        idx = torch.searchsorted(cdf, (u_t * cdf[..., -1:]).contiguous()).clamp_(max=C - 1)
        onehot = torch.zeros_like(cdf).scatter_(-1, idx, 1.0)
        return Scores((probs.unsqueeze(0) - onehot).movedim(-1, 2), 1, self.scale(Z, t) / samples)


class _Weighted(Builtin):
    """MSE and L1: ``reduction='mean'`` with ``weight=`` divides by the sum of the weights."""

    def density(self, Z: torch.Tensor, t: Any) -> torch.Tensor:
        w = self.options.get("weight")
        return super().density(Z, t) if w is None else w.to(Z.device, Z.dtype).expand(Z.shape)


class _MSE(_Weighted):
    has_likelihood = True

    def output_hvp(self, Z: torch.Tensor, t: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        if t.shape != Z.shape:  # a broadcasting target: autodiff
            return super().output_hvp(Z, t)
        w = self.options.get("weight")
        two = 2.0 if w is None else 2.0 * w.to(Z.device, Z.dtype)
        return lambda U: two * U

    def mc(self, Z: torch.Tensor, t: Any, samples: int, seed: int, offset: int) -> Scores:
        if t.shape != Z.shape:
            raise ValueError(f"FisherOperator(kind='mc') with MSE needs targets shaped like the outputs, got "
                             f"{tuple(t.shape)} and {tuple(Z.shape)}")
        Z = Z.detach()
        B, D = Z.shape[0], Z[0].numel()
        u = _philox.uniforms(seed, np.arange(offset, offset + B), samples, 2 * D)  # (S, B, 2D)
        eps = np.sqrt(-2.0 * np.log(u[..., :D])) * np.cos(2.0 * np.pi * u[..., D:])  # Box-Muller
        R = math.sqrt(2.0) * torch.as_tensor(eps, device=Z.device, dtype=Z.dtype).reshape(samples, *Z.shape)
        w = self.options.get("weight")
        if w is not None:
            R = R * w.to(Z.device, Z.dtype).sqrt()
        return Scores(R, None, torch.full((B,), 1.0 / samples, dtype=Z.dtype, device=Z.device))
