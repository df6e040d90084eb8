"""The embedded model of the ``specop`` command: a tanh MLP on scikit-learn's digits.

scikit-learn ships the 1,797 8x8 handwritten digits (UCI "Optical Recognition of
Handwritten Digits", Alpaydin & Kaynak 1998) inside the package, so nothing is
downloaded. The model is a 64-64-10 tanh MLP (P = 4,810 parameters) trained by
full-batch gradient descent (learning rate 0.1, 300 steps) on the mean cross-entropy;
training is seeded and takes one to two seconds on one CPU core. At that point (94%
training accuracy, loss 0.29) the Hessian shows the C - 1 = 9 outliers of
cross-entropy clearly (Papyan, JMLR 2020): the 9th/10th eigenvalue ratio is 2.0-2.5
over initialisation seeds 0-3, the largest gap of the top 12. Trained to zero loss,
the outliers shrink into the bulk, which is why training stops early.

Benchmarks and the docs examples import :func:`digits_problem` and
:func:`load_digits_tensors` from here, so the numbers they show match the report.

This module imports torch inside its functions only (``import specop.cli`` must not
import torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["WIDTHS", "load_digits_tensors", "make_mlp", "train", "digits_problem", "num_classes"]

#: Layer widths of the embedded MLP (input, hidden, hidden, classes).
WIDTHS = (64, 64, 10)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float64
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        return getattr(torch, dtype)
    return dtype


def load_digits_tensors(dtype: Any = "float64", device: Any = None, one_hot: bool = False) -> tuple[Any, Any]:
    """scikit-learn's bundled digits as torch tensors ``(X, y)``.

    Parameters
    ----------
    dtype : str or torch.dtype
        Floating dtype of ``X`` (and of ``y`` when ``one_hot``).
    device : str or torch.device, optional
        Where the tensors live (default CPU).
    one_hot : bool
        Return ``y`` as a one-hot float matrix (for MSE losses) instead of int64 labels.

    Returns
    -------
    X : torch.Tensor
        Shape ``(1797, 64)``, pixel intensities scaled to ``[0, 1]``.
    y : torch.Tensor
        Shape ``(1797,)`` int64 class labels, or ``(1797, 10)`` one-hot.
    """
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    dt = _torch_dtype(dtype)
    X = torch.as_tensor(bunch.data / 16.0, dtype=dt, device=device)
    y = torch.as_tensor(bunch.target, dtype=torch.int64, device=device)
    if one_hot:
        y = torch.nn.functional.one_hot(y, num_classes=WIDTHS[-1]).to(dt)
    return X, y


def num_classes() -> int:
    """Number of classes of the digits data (10)."""
    return WIDTHS[-1]


def make_mlp(seed: int = 0, widths: tuple[int, ...] = WIDTHS, dtype: Any = "float64", device: Any = None) -> Any:
    """A freshly initialised tanh MLP (``torch.nn.Sequential``), seeded.

    Initialisation uses a private ``torch.Generator`` (PyTorch's default ``Linear``
    init), so the global RNG state is left alone.
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):  # noqa: RUF007
        lin = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        bound = 1.0 / n_in**0.5
        with torch.no_grad():
            lin.weight.copy_(torch.empty(n_out, n_in, dtype=torch.float64).uniform_(-bound, bound, generator=gen))
            lin.bias.copy_(torch.empty(n_out, dtype=torch.float64).uniform_(-bound, bound, generator=gen))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).to(dtype=_torch_dtype(dtype), device=device)


def train(model: Any, loss_fn: Callable[[Any, Any], Any], data: tuple[Any, Any], steps: int, *,
          lr: float = 1e-2, optimizer: str = "adam", batch_size: int | None = None, seed: int = 0,
          callback: Callable[[int, Any], None] | None = None) -> Any:
    """Train ``model`` in place for ``steps`` steps; returns the model.

    Parameters
    ----------
    model, loss_fn, data
        A torch module, a loss on ``(outputs, targets)`` with mean reduction, and ``(X, y)``.
    steps : int
        Number of optimizer steps.
    lr : float
        Learning rate.
    optimizer : {"adam", "gd", "sgd"}
        Full-batch Adam, full-batch gradient descent, or minibatch SGD
        (``batch_size`` samples per step, seeded shuffling).
    batch_size : int, optional
        Minibatch size for ``"sgd"`` (default 64).
    seed : int
        Seed of the minibatch order.
    callback : callable, optional
        ``callback(step, model)`` called before each step and once after the last (step == steps).
    """
    import torch

    if optimizer not in ("adam", "gd", "sgd"):
        raise ValueError(f"optimizer: expected 'adam', 'gd' or 'sgd', got {optimizer!r}")
    X, y = data
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    bs = batch_size or 64
    order = torch.randperm(X.shape[0], generator=gen)
    pos = 0
    for step in range(steps):
        if callback is not None:
            callback(step, model)
        if optimizer == "sgd":
            if pos + bs > X.shape[0]:
                order, pos = torch.randperm(X.shape[0], generator=gen), 0
            idx = order[pos:pos + bs].to(X.device)
            pos += bs
            xb, yb = X[idx], y[idx]
        else:
            xb, yb = X, y
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    if callback is not None:
        callback(steps, model)
    return model


def digits_problem(seed: int = 0, train_steps: int = 300, dtype: Any = "float64", device: Any = None,
                   lr: float = 0.1, optimizer: str = "gd") -> tuple[Any, Any, tuple[Any, Any]]:
    """The report's problem: a trained digits MLP, its loss and the full data set.

    Parameters
    ----------
    seed : int
        Seed of the initialisation.
    train_steps : int
        Full-batch training steps (0 = the untrained network).
    dtype : str or torch.dtype
        ``"float64"`` (default) or ``"float32"``; training always runs in float64 and
        the trained model is cast afterwards, so both precisions see the same weights.
    device : str or torch.device, optional
        Where the model and data live.
    lr : float
        Learning rate.
    optimizer : {"gd", "adam", "sgd"}
        Full-batch gradient descent (default), full-batch Adam, or minibatch SGD.

    Returns
    -------
    model : torch.nn.Sequential
        The trained 64-64-10 tanh MLP.
    loss_fn : torch.nn.CrossEntropyLoss
        Mean cross-entropy on ``(logits, labels)``.
    data : tuple of torch.Tensor
        ``(X, y)``, all 1,797 samples.

    Examples
    --------
    >>> from specop.cli.digits import digits_problem
    >>> model, loss_fn, (X, y) = digits_problem(seed=0, train_steps=10)
    >>> sum(p.numel() for p in model.parameters())
    4810
    """
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = load_digits_tensors("float64")
    model = make_mlp(seed)
    train(model, loss_fn, (X, y), train_steps, lr=lr, optimizer=optimizer)
    dt = _torch_dtype(dtype)
    model = model.to(dtype=dt, device=device)
    return model, loss_fn, (X.to(dtype=dt, device=device), y.to(device))
