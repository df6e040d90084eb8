"""``spectral_density``: SLQ or KPM over seeded probes, resumable from a checkpoint.

Probe ``r`` is :func:`specop.random.probes` column ``r`` of the run's seed, so a
result is identical on every backend and does not depend on how the probes are
grouped; a checkpoint stores each finished probe and a rerun with the same
arguments skips those probes and returns the identical result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from specop import backends
from specop._errors import NonFiniteError
from specop._validate import check_bounds, check_callable, check_path, check_seed, fail
from specop.linalg._common import (
    REORTH,
    SYMMETRY_MODES,
    check_choice,
    check_positive_int,
    ensure_symmetric,
    prepare,
    recurrence_dtype,
)
from specop.linalg.batched import lanczos_columns
from specop.linalg.checkpoint import Checkpoint, operator_probe
from specop.linalg.density import KPMDensity, SLQDensity, SpectralDensity
from specop.linalg.kpm import KERNELS, chebyshev_moments, estimate_bounds
from specop.linalg.lanczos import lanczos, tridiagonal_eigh
from specop.operators.concrete import FunctionOperator
from specop.random import KINDS, probes, resolve_seed

__all__ = ["spectral_density", "slq_probe"]


def _rule(alpha: np.ndarray, beta: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss quadrature nodes, weights and Ritz residuals of a tridiagonal, padded to ``steps`` (zero weights).

    The residual of node ``i`` is ``|beta_m s_{m,i}|``: an eigenvalue of ``A`` lies within it of
    the node (zero after a breakdown: the nodes are then eigenvalues).
    """
    theta, S = tridiagonal_eigh(alpha, beta[:-1])
    w = S[0] ** 2
    nodes, weights, resid = np.full(steps, theta[-1]), np.zeros(steps), np.zeros(steps)
    nodes[: theta.size], weights[: theta.size] = theta, w / w.sum()
    resid[: theta.size] = abs(float(beta[-1])) * np.abs(S[-1])
    return nodes, weights, resid


def _probe_rule(A: Any, v: Any, steps: int, reorth: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(nodes, weights, residuals, matvecs)`` of one probe (see :func:`_rule`)."""
    res = lanczos(A, v, steps=steps, reorth=reorth, recurrence_dtype="float64", check_symmetric=False)
    return (*_rule(res.alpha, res.beta, steps), res.matvecs)


def slq_probe(A: Any, v: Any, steps: int, reorth: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Gauss quadrature rule of one probe: ``(nodes, weights, matvecs)``, padded to ``steps``."""
    nodes, weights, _, matvecs = _probe_rule(A, v, steps, reorth)
    return nodes, weights, matvecs


class _Deflation:
    """The top ``k`` eigenpairs ``(lambda_j, u_j)`` of ``A`` and the projector ``P = I - U U^T``.

    ``B = P A P`` has the other ``n - k`` eigenvalues of ``A`` on ``range(P)`` (and ``k``
    zeros along ``U``, which projected probes never see).
    """

    def __init__(self, A: Any, k: int, key: Any, stored: dict[str, Any]) -> None:
        if "deflate_vectors" in stored:  # resumed: the same basis, not a recomputed one
            self.values = np.asarray(stored["deflated"], dtype=np.float64)
            self.U = backends.from_numpy(stored["deflate_vectors"], A.xp, A.device, A.dtype)
            self.matvecs = int(stored["deflate_matvecs"])
        else:
            from specop.linalg.thick_restart import eigsh

            res = eigsh(A, k, which="LA", tol=1e-6, seed=key, verify=False, check_symmetric=False)
            # row-major, as a basis reloaded from a checkpoint is: the same layout, the same BLAS path and
            # rounding, so that a resumed run is bit-identical (a transposed view rounded differently)
            self.values, self.U, self.matvecs = res.eigenvalues, backends.contiguous(res.eigenvectors), int(res.matvecs)
        self.op = FunctionOperator(lambda v: self.project(A.matvec(self.project(v))), A.shape, A.dtype, like=A,
                                   symmetric=True, matmat=lambda V: self.project(A.matmat(self.project(V))))

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps to resume with the same basis (host copies)."""
        return {"deflated": self.values, "deflate_vectors": backends.to_numpy(self.U),
                "deflate_matvecs": np.asarray(self.matvecs)}

    def project(self, V: Any) -> Any:
        """``P V`` for a vector or a block of columns."""
        return V - self.U @ (self.U.T @ V)


def _slq_block(A: Any, V: Any, steps: int, reorth: str, rdt: Any, what: str, first: int) -> list[tuple]:
    """Quadrature rules of the probes ``first, first + 1, ...`` in the columns of ``V``:
    ``[(nodes, weights, residuals, matvecs), ...]``."""
    if V.shape[1] == 1 or reorth != "none":
        rules = []
        for c in range(V.shape[1]):
            try:
                rules.append(_probe_rule(A, V[:, c], steps, reorth))
            except NonFiniteError as err:
                raise NonFiniteError(f"{what} (probe {first + c}): {err}") from err
        return rules
    return [(*_rule(a, b, steps), steps) for a, b in lanczos_columns(A, V, steps, rdt, what, first)]


def _schema(method: str, steps: int, degree: int, n: int, deflate: int, estimated: bool) -> dict[str, Any]:
    """The arrays a checkpoint of these settings holds: ``{name: (shape, kind)}`` (``"p"``: the probes stored)."""
    width = steps if method == "slq" else 0
    schema: dict[str, Any] = {"a": (("p", steps if method == "slq" else degree + 1), "f"), "b": (("p", width), "f"),
                              "r": (("p", width), "f"), "matvecs": (("p",), "i"), "extra_matvecs": ((), "i")}
    if method == "kpm" and estimated:
        schema["bounds"] = ((2,), "f")
    if deflate:
        schema |= {"deflated": ((deflate,), "f"), "deflate_vectors": ((n, deflate), "f"),
                   "deflate_matvecs": ((), "i")}
    return schema


def spectral_density(A: Any, *, method: str = "slq", num_probes: int = 10, steps: int = 90, degree: int = 90,
                     bounds: tuple[float, float] | None = None, seed: Any = None, reorth: str = "none",
                     kind: str = "rademacher", kernel: str = "jackson", checkpoint: Any = None,
                     progress: Callable[[int, int], None] | None = None, block: int = 1,
                     check_symmetric: bool | str = "auto", deflate: int = 0) -> SpectralDensity:
    """Estimate the spectral density of a symmetric operator.

    Parameters
    ----------
    A : LinearOperator or array-like
        Square symmetric operator.
    method : {"slq", "kpm"}
        Stochastic Lanczos quadrature (``steps`` matvecs per probe) or the kernel
        polynomial method (``degree`` moments for about ``degree / 2`` matvecs per probe).
    num_probes : int
        Number of random probes.
    steps : int
        Lanczos steps per probe (SLQ; clipped to ``n``).
    degree : int
        Chebyshev degree (KPM), at least 1.
    bounds : (float, float), optional
        Interval holding the spectrum (KPM); default estimated by a 20-step Lanczos run.
    seed : int, numpy Generator or None
        Seed of the probes (``None`` with an existing checkpoint reuses its seed).
    reorth : {"none", "selective", "full"}
        Lanczos reorthogonalization (SLQ). ``"none"`` stores no basis.
    kind : {"rademacher", "gaussian", "sphere"}
        Probe distribution.
    kernel : {"jackson", "lorentz", "none"}
        KPM damping kernel.
    checkpoint : str or Path, optional
        File storing finished probes atomically; a rerun resumes from it.
    progress : callable, optional
        Called as ``progress(done, total)`` after each block of probes.
    block : int
        Probes advanced together, one ``matmat`` per step (SLQ with
        ``reorth="none"``, and KPM). Larger blocks are faster for operators with
        a batched product (dense GEMM, vmapped curvature operators) and cost
        ``3 * block`` vectors of memory. Probe ``r``'s numbers are the same for
        every ``num_probes`` and resume point; across different ``block`` values
        they agree to rounding (the batched product may sum in another order).
    check_symmetric : {"auto", True, False}
        Symmetry test before any work, as in :func:`specop.eigsh` (``"auto"``: refuse
        ``is_symmetric=False``, trust known symmetry, test a claim with two products).
    deflate : int
        SLQ only: compute the ``deflate`` largest eigenpairs first (:func:`eigsh`,
        ``tol=1e-6``, their matvecs counted), keep them as exact atoms of mass ``1/n``
        (``SLQDensity.deflated``), and run the probes on ``(I - U U^T) A (I - U U^T)``.
        For a Hessian's few large outliers this removes the largest source of probe
        variance: their weights ``(u_j^T v)^2`` (see docs, "Algorithms").

    Returns
    -------
    SLQDensity or KPMDensity
    """
    A, n = prepare(A, "spectral_density")
    check_choice(method, "method", ("slq", "kpm"))
    check_choice(reorth, "reorth", REORTH)
    check_choice(kind, "kind", KINDS)
    check_choice(kernel, "kernel", KERNELS)
    num_probes = check_positive_int(num_probes, "num_probes")
    block = check_positive_int(block, "block")
    steps, degree = check_positive_int(steps, "steps"), check_positive_int(degree, "degree")
    deflate = check_positive_int(deflate, "deflate", 0)
    if deflate and method != "slq":
        raise fail("deflate", "0 with method='kpm' (deflation is for method='slq')", deflate)
    bounds = check_bounds(bounds)
    check_seed(seed)
    check_path(checkpoint, "checkpoint")
    check_callable(progress, "progress")
    check_choice(check_symmetric, "check_symmetric", SYMMETRY_MODES)
    if deflate >= n:
        raise fail("deflate", f"fewer than n = {n} eigenpairs", deflate)
    checked = ensure_symmetric(A, "spectral_density", check_symmetric)  # its products: 0 or 2
    steps = min(steps, n - deflate)
    fingerprint: dict[str, Any] = {"deflate": deflate} if deflate else {}
    fingerprint |= {"method": method, "n": n, "dtype": backends.dtype_name(A.dtype), "backend": A.backend,
                    "kind": kind, "block": block,
                    **({"steps": steps, "reorth": reorth} if method == "slq" else
                       {"degree": degree, "kernel": kernel, "bounds": bounds})}
    store, done, identity = None, {}, None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, fingerprint)
        stored = store.stored_fingerprint()
        if seed is None and stored is not None:
            seed = stored.get("seed")
        key = resolve_seed(seed)
        store.fingerprint["seed"] = key
        # the operator itself (one matmat of two fixed probes, bookkeeping outside `matvecs`): a checkpoint
        # of another operator of the same size is refused, not reused
        identity = operator_probe(A)
        done = store.load(_schema(method, steps, degree, n, deflate, bounds is None), identity,
                          backends.dtype_name(A.dtype))
    else:
        key = resolve_seed(seed)
    rdt = recurrence_dtype(A, "float64")
    state = {name: list(done.get(name, [])) for name in ("a", "b", "r", "matvecs")}
    extra = int(done["extra_matvecs"]) if "extra_matvecs" in done else 0
    interval: tuple[float, float] = (0.0, 0.0) if bounds is None else bounds
    if method == "kpm" and bounds is None:
        if "bounds" in done:
            interval = (float(done["bounds"][0]), float(done["bounds"][1]))
        else:
            try:
                interval, extra = estimate_bounds(A, seed=key)
            except NonFiniteError as err:
                raise NonFiniteError(f"spectral_density (KPM bounds estimate): {err}") from err
    defl = _Deflation(A, deflate, key, done) if deflate else None
    target = A if defl is None else defl.op
    if defl is not None:
        extra = defl.matvecs
    r = len(state["matvecs"])
    while r < num_probes:
        stop = min(num_probes, (r // block + 1) * block)  # blocks aligned at multiples of `block`
        V = probes(n, stop - r, seed=key, kind=kind, like=A, start=r)
        if defl is not None:
            V = defl.project(V)
        what = "spectral_density"
        if method == "slq":
            rows = _slq_block(target, V, steps, reorth, rdt, what, r)
        else:
            mu, mv = chebyshev_moments(A, V, degree, interval, rdt, what, estimated=bounds is None, first=r)
            rows = [(m, np.zeros(0), np.zeros(0), mv) for m in mu]
        for a, b, res, mv in rows:
            state["a"].append(a)
            state["b"].append(b)
            state["r"].append(res)
            state["matvecs"].append(mv)
        r = stop
        if store is not None:
            arrays = {k: np.asarray(v) for k, v in state.items()}
            arrays["extra_matvecs"] = np.asarray(extra)
            if method == "kpm":
                arrays["bounds"] = np.asarray(interval)
            if defl is not None:
                arrays |= defl.arrays()
            store.save(arrays, identity)
        if progress is not None:
            progress(r, num_probes)
    a = np.asarray(state["a"][:num_probes])
    matvecs = int(np.sum(state["matvecs"][:num_probes])) + extra + checked
    if method == "slq":
        return SLQDensity(matvecs=matvecs, n=n, nodes=a, weights=np.asarray(state["b"][:num_probes]),
                          deflated=np.zeros(0) if defl is None else np.sort(defl.values),
                          residuals=np.asarray(state["r"][:num_probes]))
    return KPMDensity(matvecs=matvecs, n=n, probe_moments=a, bounds=interval, kernel=kernel)
