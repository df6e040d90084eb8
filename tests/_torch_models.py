"""Small seeded torch models, data and dense curvature oracles for the curvature tests.

The oracles are built independently of specop: ``torch.autograd.functional.hessian``
of the full-data mean loss as a function of the flat parameter block, and
``J^T H_out J`` from ``torch.autograd.functional.jacobian`` / ``hessian``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus}


def mlp(widths: Sequence[int], act: str = "tanh", seed: int = 0) -> nn.Sequential:
    """A float64 MLP with the given layer widths (activation between layers)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers).double()


def cnn(seed: int = 0) -> nn.Sequential:
    """A tiny CNN on 1x5x5 images with 3 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 2), nn.Flatten(),
                         nn.Linear(8, 3)).double()


def bn_model(seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """Linear-BatchNorm-tanh-(dropout)-Linear with non-trivial running statistics."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(dropout),
                          nn.Linear(4, 3)).double()
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(4, dtype=torch.float64) * 0.3)
        bn.running_var.copy_(torch.rand(4, dtype=torch.float64) + 0.5)
        bn.weight.copy_(torch.rand(4, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(4, dtype=torch.float64) * 0.1)
        bn.num_batches_tracked.fill_(7)
    return model


def classification(n: int, d: int | tuple[int, ...], classes: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded float64 inputs of shape ``(n, *d)`` and integer labels."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, d) if isinstance(d, int) else (n, *d)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def regression(n: int, d: int, out: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded float64 inputs and real targets."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, out, generator=g, dtype=torch.float64)


def selected(model: nn.Module, names: Sequence[str] | None) -> list[str]:
    return [n for n, p in model.named_parameters() if (p.requires_grad if names is None else n in names)]


def _as_function(model: nn.Module, names: Sequence[str]) -> tuple[Callable[..., torch.Tensor], torch.Tensor]:
    """``(f(theta_flat, X), theta0)`` for the block ``names`` (model in its current mode)."""
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    theta0 = torch.cat([named[n].detach().reshape(-1) for n in names])

    def f(theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, [s.numel() for s in shapes])
        tensors = {n: p.view(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        return functional_call(model, tensors, (X,))

    return f, theta0


def dense_hessian(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor,
                  names: Sequence[str] | None = None) -> torch.Tensor:
    """The Hessian of the mean loss over ``(X, y)`` (model used in its current mode)."""
    f, theta0 = _as_function(model, selected(model, names))
    return torch.autograd.functional.hessian(lambda t: loss_fn(f(t, X), y), theta0)


def dense_ggn(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor,
              names: Sequence[str] | None = None) -> torch.Tensor:
    """Explicit ``J^T H_out J`` with ``H_out`` the autodiff Hessian of the loss in the outputs."""
    f, theta0 = _as_function(model, selected(model, names))
    Z = f(theta0, X).detach()
    J = torch.autograd.functional.jacobian(lambda t: f(t, X), theta0).reshape(Z.numel(), -1)
    H_out = torch.autograd.functional.hessian(lambda z: loss_fn(z.view(Z.shape), y), Z.reshape(-1))
    return J.T @ H_out @ J


def per_sample_grads(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor,
                     names: Sequence[str] | None = None) -> torch.Tensor:
    """``(N, P)`` gradients of the per-sample losses ``loss_fn(f(x_n)[None], y_n[None])``."""
    f, theta0 = _as_function(model, selected(model, names))
    rows = []
    for n in range(X.shape[0]):
        t = theta0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(f(t, X[n:n + 1]), y[n:n + 1]), t)
        rows.append(g)
    return torch.stack(rows)


def exact_fisher_ce(model: nn.Module, X: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
    """``(1/N) sum_n sum_c p_nc g_nc g_nc^T`` with ``g_nc`` the gradient of ``-log p_c(x_n)``."""
    f, theta0 = _as_function(model, selected(model, names))
    out = torch.zeros(theta0.numel(), theta0.numel(), dtype=theta0.dtype)
    for n in range(X.shape[0]):
        t = theta0.clone().requires_grad_(True)
        logp = torch.log_softmax(f(t, X[n:n + 1])[0], dim=0)
        for c in range(logp.shape[0]):
            (g,) = torch.autograd.grad(-logp[c], t, retain_graph=True)
            out += logp[c].exp().detach() * torch.outer(g, g)
    return out / X.shape[0]


def rel_err(A: torch.Tensor, B: torch.Tensor) -> float:
    """``max|A - B| / max|B|``."""
    return float((A - B).abs().max() / B.abs().max())
