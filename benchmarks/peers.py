"""Adapters that drive the peers (installed from PyPI into the benchmark env) on our problems.

Nothing of the peers is copied here: each function imports the peer, calls its public
API and returns plain numbers. A peer that is not installed makes its function
return ``None``, and the caller skips the row. Two patches are applied at call time
only, to PyHessian, and undone afterwards:

* ``torch.eig`` no longer exists in torch >= 2; PyHessian's ``density()`` calls
  ``torch.eig(T, eigenvectors=True)`` on its tridiagonal. For the call we provide
  one built on ``torch.linalg.eigh`` that returns the old ``(n, 2)`` value layout.
* Its module-level ``hessian_vector_product`` is wrapped to count HVPs.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from benchmarks._common import peer


class Counting(spla.LinearOperator):
    """A symmetric matrix, product or solve behind a counting scipy operator (one count per column)."""

    def __init__(self, apply: Any, n: int) -> None:
        super().__init__(np.dtype(np.float64), (n, n))
        self.apply, self.count = apply, 0

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.count += 1
        return self.apply(x)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        self.count += X.shape[1]
        return self.apply(X)


class Counted:
    """A matvec callable that counts the vectors it is applied to."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, v: Any) -> Any:
        self.calls += 1 if getattr(v, "ndim", 1) == 1 else v.shape[1]
        return self.fn(v)


def _pyhessian(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> tuple[Any, Any, Counted]:
    """``(module, hessian object, counter)`` with PyHessian's HVP counted; the caller restores."""
    import pyhessian  # noqa: F401  (the package shadows its module by the class `hessian`)

    mod = sys.modules["pyhessian.hessian"]
    orig = mod.hessian_vector_product
    c = Counted(None)

    def counted(gradsH: Any, params: Any, v: Any) -> Any:
        c.calls += 1
        return orig(gradsH, params, v)

    mod.hessian_vector_product = counted
    c.fn = orig
    h = mod.hessian(model, loss_fn, data=data, cuda=str(data[0].device).startswith("cuda"))
    return mod, h, c


def _restore(mod: Any, c: Counted, model: Any, was_training: bool) -> None:
    mod.hessian_vector_product = c.fn
    model.train(was_training)
    for p in model.parameters():  # PyHessian leaves a create_graph gradient in .grad
        p.grad = None


def pyhessian_matvec(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> Any:
    """PyHessian's single-batch HVP on a flat vector (its gradient graph built once, reused)."""
    if peer("pyhessian") is None:
        return None
    import torch

    was_training = model.training
    mod, h, c = _pyhessian(model, loss_fn, data)
    _restore(mod, c, model, was_training)
    sizes = [p.numel() for p in h.params]
    shapes = [p.shape for p in h.params]

    def hv(v: Any) -> Any:
        vs = [x.view(s) for x, s in zip(torch.split(v, sizes), shapes, strict=True)]
        return torch.cat([x.reshape(-1) for x in c.fn(h.gradsH, h.params, vs)])

    return hv


def pyhessian_top(model: Any, loss_fn: Any, data: tuple[Any, Any], k: int) -> tuple[list[float], int] | None:
    """PyHessian ``eigenvalues(top_n=k)`` at its defaults: ``(values, HVPs)``."""
    if peer("pyhessian") is None:
        return None
    was_training = model.training
    mod, h, c = _pyhessian(model, loss_fn, data)
    try:
        vals, _ = h.eigenvalues(top_n=k)
    finally:
        _restore(mod, c, model, was_training)
    return vals, c.calls


def pyhessian_density(model: Any, loss_fn: Any, data: tuple[Any, Any], steps: int, probes: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """PyHessian ``density(iter=steps, n_v=probes)`` with ``torch.eig`` patched: nodes, weights, HVPs."""
    if peer("pyhessian") is None:
        return None
    import torch

    def eig(T: Any, eigenvectors: bool = True) -> tuple[Any, Any]:
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    had = hasattr(torch, "eig")
    old = getattr(torch, "eig", None)
    torch.eig = eig
    torch.manual_seed(seed)  # PyHessian has no seed argument; its probes come from the global RNG
    was_training = model.training
    mod, h, c = _pyhessian(model, loss_fn, data)
    try:
        nodes, weights = h.density(iter=steps, n_v=probes)
    finally:
        _restore(mod, c, model, was_training)
        if had:
            torch.eig = old
        else:
            del torch.eig
    return np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64), c.calls


def curvlinops_matvec(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> Any:
    """curvlinops ``HessianLinearOperator`` (one full batch) as ``v -> H v``."""
    cl = peer("curvlinops")
    if cl is None:
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    H = cl.HessianLinearOperator(model, loss_fn, params, [data], check_deterministic=False)
    return lambda v: H @ v


def curvlinops_slq(A: Any, steps: int, probes: int, seed: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """curvlinops ``fast_lanczos`` (Papyan 2020, no reorthogonalization), once per probe.

    ``A``: a curvlinops operator or a torch matrix (both have ``@``, shape, device, dtype).
    """
    if peer("curvlinops") is None:
        return None
    import torch
    from curvlinops.papyan2020traces.spectrum import fast_lanczos

    torch.manual_seed(seed)  # its start vector comes from the global RNG
    c = Counted(A.__matmul__)

    class _Op:  # count the products; fast_lanczos only needs @, shape, device, dtype
        shape, device, dtype = A.shape, A.device, A.dtype

        def __matmul__(self, v: Any) -> Any:
            return c(v)

    nodes, weights = [], []
    for _ in range(probes):
        evals, evecs = fast_lanczos(_Op(), steps)
        nodes.append(evals.double().cpu().numpy())
        weights.append((evecs[0, :] ** 2).double().cpu().numpy())
    return np.array(nodes), np.array(weights), c.calls


def eigenthings_operator(model: Any, loss_fn: Any, data: tuple[Any, Any]) -> Any:
    """hessian-eigenthings ``HessianOperator`` on one full batch, or None."""
    he = peer("hessian_eigenthings")
    if he is None:
        return None
    return he.HessianOperator(model, [data], he.supervised_loss(loss_fn))


def eigenthings_slq(op: Any, steps: int, probes: int, seed: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """hessian-eigenthings ``spectral_density`` (full reorthogonalization): nodes, weights, matvecs.

    ``op``: its ``HessianOperator`` or a torch matrix (wrapped in its ``LambdaOperator``).
    """
    he = peer("hessian_eigenthings")
    if he is None:
        return None
    if not hasattr(op, "matvec"):
        M = op
        op = he.LambdaOperator(lambda v: M @ v, M.shape[0], M.device, M.dtype)
    c = Counted(op.matvec)
    op.matvec = c
    try:
        r = he.spectral_density(op, num_runs=probes, lanczos_steps=steps, seed=seed, num_grid_points=16)
    finally:
        del op.matvec
    nodes = r.raw_eigenvalues.double().cpu().numpy()
    weights = r.raw_weights.double().cpu().numpy()
    weights = np.where(np.isnan(nodes), 0.0, weights)
    return np.nan_to_num(nodes), weights, c.calls


def matfree_slq(matvec: Any, params: tuple, n: int, dtype: Any, steps: int, probes: int, seed: int,
                reortho: str = "full") -> tuple[np.ndarray, np.ndarray, int] | None:
    """matfree ``decomp.tridiag_sym(steps)`` on ``matvec(v, *params)`` (JAX), once per Rademacher probe.

    ``params`` are passed through as arguments of the jitted function (not closed over).
    """
    if peer("matfree") is None:
        return None
    import jax
    import jax.numpy as jnp
    from matfree import decomp

    tri = jax.jit(lambda v, *p: decomp.tridiag_sym(steps, reortho=reortho)(matvec, v, *p)[1])
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(probes):
        v = jnp.asarray(rng.choice([-1.0, 1.0], size=n), dtype=dtype)
        T = np.asarray(tri(v, *params), dtype=np.float64)
        w, S = np.linalg.eigh(0.5 * (T + T.T))
        nodes.append(w)
        weights.append(S[0] ** 2)
    return np.array(nodes), np.array(weights), steps * probes
