"""The benchmark problems: digits MLP and CNN Hessians, the 3-D Laplacian, spiked matrices.

* Digits: scikit-learn's bundled 1,797 digits (nothing is downloaded), the embedded
  64-64-10 tanh MLP of ``specop.cli.digits`` (P = 4,810, float64, trained 300
  full-batch gradient descent steps, seed 0) or a small tanh CNN; mean cross-entropy.
* 3-D Laplacian: the 7-point Dirichlet Laplacian on an ``m^3`` grid, whose eigenvalues
  are the sums ``l_i + l_j + l_k`` of ``l_j = 2 - 2 cos(j pi / (m + 1))``.
* Spiked: a GOE matrix ``(G + G^T) / sqrt(2 n)`` (semicircle on [-2, 2]) plus ten
  rank-one spikes ``theta_i u_i u_i^T`` with ``theta_i`` in [3, 12] (outliers near
  ``theta + 1 / theta``, Baik, Ben Arous & Peche 2005).

Exact spectra (dense ``eigvalsh``) are computed once and cached under
``$SPECOP_BENCH_CACHE`` (default ``~/.cache/specop-bench``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks._common import CACHE


def digits_mlp(dtype: str = "float64", device: Any = None, widths: tuple[int, ...] | None = None,
               train_steps: int = 300) -> tuple[Any, Any, tuple[Any, Any]]:
    """``(model, loss_fn, (X, y))``: the report's trained digits MLP (or one of other ``widths``)."""
    from specop.cli.digits import WIDTHS, digits_problem, load_digits_tensors, make_mlp, train

    if widths is None or tuple(widths) == WIDTHS:
        return digits_problem(seed=0, train_steps=train_steps, dtype=dtype, device=device)
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = load_digits_tensors("float64")
    model = make_mlp(0, tuple(widths))
    train(model, loss_fn, (X, y), train_steps)
    dt = getattr(torch, dtype)
    return model.to(dtype=dt, device=device), loss_fn, (X.to(dtype=dt, device=device), y.to(device))


def digits_cnn(dtype: str = "float64", device: Any = None, train_steps: int = 100) -> tuple[Any, Any, tuple]:
    """A small tanh CNN on the 8x8 digits: conv(1->8, 3x3) - conv(8->8, 3x3) - linear (P = 3,562)."""
    import torch

    from specop.cli.digits import load_digits_tensors, train

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Conv2d(8, 8, 3), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10),
    ).double()
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = load_digits_tensors("float64")
    train(model, loss_fn, (X, y), train_steps)
    dt = getattr(torch, dtype)
    return model.to(dtype=dt, device=device), loss_fn, (X.to(dtype=dt, device=device), y.to(device))


def num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flat_loss(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(f, theta0)``: the mean loss as a function of the flat parameter vector (torch.func)."""
    import torch
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    theta0 = torch.cat([p.reshape(-1) for p in params])
    X, y = data

    def f(theta: Any) -> Any:
        chunks = torch.split(theta, sizes)
        ps = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return loss_fn(functional_call(model, ps, (X,)), y)

    return f, theta0


def func_hvp(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> tuple[Any, Any, Any]:
    """``(hvp, grad, theta0)`` closures by torch.func (forward-over-reverse)."""
    from torch.func import grad, jvp

    f, theta0 = flat_loss(model, loss_fn, data)
    g = grad(f)

    def hvp(v: Any) -> Any:
        return jvp(g, (theta0,), (v,))[1]

    return hvp, (lambda: g(theta0)), theta0


def eager_hvp(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(hvp, grad)`` closures by autograd double backward on the module itself."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    X, y = data

    def grad() -> Any:
        return torch.autograd.grad(loss_fn(model(X), y), params)

    def hvp(v: Any) -> Any:
        gs = torch.autograd.grad(loss_fn(model(X), y), params, create_graph=True)
        dot = sum((g.reshape(-1) * vi).sum() for g, vi in zip(gs, torch.split(v, sizes), strict=True))
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])

    return hvp, grad


def specop_hessian(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> tuple[Any, str]:
    """specop's Hessian operator: ``specop.curvature.torch.HessianOperator`` when it exists.

    Returns ``(operator, label)``; before the curvature package lands, a
    ``FunctionOperator`` around the torch.func HVP stands in (the label says so).
    """
    try:
        from specop.curvature.torch import HessianOperator
    except ImportError:
        HessianOperator = None
    if HessianOperator is not None:
        return HessianOperator(model, loss_fn, data), "specop HessianOperator"
    import specop

    hvp, _, theta0 = func_hvp(model, loss_fn, data)
    n = theta0.numel()
    return specop.FunctionOperator(hvp, (n, n), like=theta0, symmetric=True), "specop FunctionOperator(torch.func)"


def _cached(key: str, compute: Any) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path)
    value = np.asarray(compute(), dtype=np.float64)
    np.save(path, value)
    return value


def exact_hessian_eigenvalues(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> np.ndarray:
    """Ascending eigenvalues of the dense Hessian (cached by a hash of the weights)."""
    import torch

    _, theta0 = flat_loss(model, loss_fn, data)
    key = hashlib.sha1(theta0.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
    hvp, _, _ = func_hvp(model, loss_fn, data)

    def compute() -> np.ndarray:
        n = theta0.numel()
        eye = torch.eye(n, dtype=theta0.dtype, device=theta0.device)
        H = torch.cat([torch.func.vmap(hvp)(eye[i:i + 256]) for i in range(0, n, 256)])
        H = H.double().cpu().numpy()
        return np.linalg.eigvalsh(0.5 * (H + H.T))

    return _cached(f"hessian-{key}", compute)


def laplacian_3d(m: int = 30) -> sp.csr_matrix:
    """7-point Dirichlet Laplacian on an ``m^3`` grid (CSR, float64)."""
    T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    eye = sp.identity(m)
    return (sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye) + sp.kron(sp.kron(eye, eye), T)).tocsr()


def laplacian_3d_eigenvalues(m: int = 30) -> np.ndarray:
    """Ascending exact eigenvalues ``l_i + l_j + l_k``, ``l_j = 2 - 2 cos(j pi / (m + 1))``."""
    lam = 2 - 2 * np.cos(np.arange(1, m + 1) * np.pi / (m + 1))
    return np.sort((lam[:, None, None] + lam[None, :, None] + lam[None, None, :]).ravel())


def spiked(n: int = 5000, spikes: int = 10, seed: int = 0) -> np.ndarray:
    """GOE ``(G + G^T) / sqrt(2n)`` plus ``spikes`` rank-one spikes in [3, 12] (dense float64)."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    A = (G + G.T) / np.sqrt(2 * n)
    U, _ = np.linalg.qr(rng.standard_normal((n, spikes)))
    theta = np.linspace(3.0, 12.0, spikes)
    A += (U * theta) @ U.T
    return A


def spiked_eigenvalues(n: int = 5000, spikes: int = 10, seed: int = 0) -> np.ndarray:
    """Ascending exact eigenvalues of :func:`spiked` (dense ``eigvalsh``, cached)."""
    return _cached(f"spiked-{n}-{spikes}-{seed}", lambda: np.linalg.eigvalsh(spiked(n, spikes, seed)))


def jax_mlp_loss(model: Any, data: tuple[Any, Any]) -> tuple[Any, Any, tuple[Any, Any]] | None:
    """``(loss, theta0, (X, y))``: a torch Linear/Tanh MLP's mean cross-entropy in JAX, ``loss(theta, X, y)``.

    The weights are copied from ``model``. Pass ``theta``, ``X`` and ``y`` to jitted
    functions as arguments (closed-over arrays become constants that XLA folds at
    compile time, which both stalls compilation and falsifies timings). None when JAX
    is missing or the model is not such an MLP.
    """
    try:
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree
    except ImportError:
        return None
    import torch

    if not all(isinstance(m, torch.nn.Linear | torch.nn.Tanh) for m in model):
        return None
    f64 = model[0].weight.dtype == torch.float64
    if f64:
        jax.config.update("jax_enable_x64", True)
    dt = np.float64 if f64 else np.float32
    params = [(jnp.asarray(m.weight.detach().cpu().numpy().astype(dt)),
               jnp.asarray(m.bias.detach().cpu().numpy().astype(dt))) for m in model if isinstance(m, torch.nn.Linear)]
    theta0, unravel = ravel_pytree(params)
    X = jnp.asarray(data[0].cpu().numpy().astype(dt))
    y = jnp.asarray(data[1].cpu().numpy())

    def loss(theta: Any, X: Any, y: Any) -> Any:
        ps = unravel(theta)
        h = X
        for i, (W, b) in enumerate(ps):
            h = h @ W.T + b
            if i < len(ps) - 1:
                h = jnp.tanh(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss, theta0, (X, y)
