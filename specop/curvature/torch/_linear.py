"""Batched vector-Jacobian products with plain autograd, and the linearization ``J`` of a model.

Every product runs on graphs built by ``torch.autograd`` from one ordinary forward pass
(no ``torch.func`` transform around the model), so that a model sees exactly the same
kernels and the same random draws (dropout) in every product, in ``gradient()`` and in
``loss()``: under ``torch.func`` transforms some kernels (scaled-dot-product attention
with dropout) consume the random stream differently.

``J v`` is the vector-Jacobian product of the linear map ``u -> J^T u`` (reverse over
reverse: ``J^T u`` is formed once with ``create_graph=True``), which avoids forward-mode
passes (Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994;
the "double-vjp" trick). The ``k`` columns of a block go through one backward pass with
``is_grads_batched`` (a loop over columns where the graph cannot be batched).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Batching", "vjp", "Linearization"]


class Batching:
    """Whether this operator's graphs can be batched over columns (learned once, then remembered)."""

    def __init__(self) -> None:
        self.ok = True


def vjp(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], k: int,
        batching: Batching) -> list[torch.Tensor | None]:
    """``sum_o <outputs[o], grads[o][j]>`` differentiated in ``inputs``, for ``j < k``: ``(k, *input.shape)`` each.

    ``grads[o]`` has shape ``(k, *outputs[o].shape)``. The graph is retained. ``None``
    for an input the outputs do not depend on.
    """
    if k == 1:
        res = torch.autograd.grad(outputs, inputs, [g[0] for g in grads], retain_graph=True, allow_unused=True)
        return [None if r is None else r.unsqueeze(0) for r in res]
    if batching.ok:
        try:
            return list(torch.autograd.grad(outputs, inputs, list(grads), retain_graph=True, allow_unused=True,
                                            is_grads_batched=True))
        except Exception:  # not batchable (in-place ops, .item(), ...): a loop; real errors re-raise there
            batching.ok = False
    per = [torch.autograd.grad(outputs, inputs, [g[j] for g in grads], retain_graph=True, allow_unused=True)
           for j in range(k)]
    return [None if per[0][i] is None else torch.stack([r[i] for r in per]) for i in range(len(inputs))]


class Linearization:
    """``J = dZ/dtheta`` at the current point: ``J V`` and ``J^T U`` for blocks of columns.

    Parameters
    ----------
    theta : sequence of tensors
        Leaves requiring grad from which ``Z`` was computed.
    Z : tensor
        The outputs, with their graph.
    batching : Batching
        Shared memo of whether columns can be batched.
    """

    def __init__(self, theta: Sequence[torch.Tensor], Z: torch.Tensor, batching: Batching) -> None:
        self.theta, self.Z, self.batching = list(theta), Z, batching
        self.u = torch.zeros_like(Z, requires_grad=True)
        with torch.enable_grad():
            jtu = torch.autograd.grad(Z, self.theta, self.u, create_graph=True, allow_unused=True) \
                if Z.requires_grad else [None] * len(self.theta)
        self.live = [i for i, g in enumerate(jtu) if g is not None and g.requires_grad]
        self.jtu: list[torch.Tensor] = [g for g in jtu if g is not None and g.requires_grad]

    def jv(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """``J V`` for ``V`` given per parameter as ``(k, *shape)``: shape ``(k, *Z.shape)``."""
        k = parts[0].shape[0]
        if not self.live:
            return torch.zeros((k, *self.Z.shape), dtype=self.Z.dtype, device=self.Z.device)
        (out,) = vjp(self.jtu, [self.u], [parts[i] for i in self.live], k, self.batching)
        return torch.zeros((k, *self.Z.shape), dtype=self.Z.dtype, device=self.Z.device) if out is None else out

    def jtv(self, U: torch.Tensor) -> list[torch.Tensor]:
        """``J^T U`` for ``U`` of shape ``(k, *Z.shape)``: per parameter ``(k, *shape)``."""
        k = U.shape[0]
        out = [torch.zeros((k, *t.shape), dtype=U.dtype, device=U.device) for t in self.theta]
        if self.live:
            res = vjp([self.Z], [self.theta[i] for i in self.live], [U], k, self.batching)
            for i, r in zip(self.live, res, strict=True):
                if r is not None:
                    out[i] = r
        return out
