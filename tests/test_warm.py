"""Warm starts of eigsh from a previous EigshResult or an (n, j) block, and specop.Tracker.

Oracles: ``numpy.linalg.eigh`` of the drawn matrix (through ``test_eigsh._check``: true residuals,
orthonormality, eigenvalue errors within Kahan's bound), ``torch.func.hessian`` and
``jax.hessian`` for the trackers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st
from strategies import SymCase, run, symmetric_matrices
from test_eigsh import WHICH, _check

import specop


def _tol(case: SymCase) -> float:
    return 1e-8 if case.dtype == "float64" else 1e-5


def test_warm_start_from_a_result_matches_eigh(backend):
    # the same operator and a perturbed one A + eps E: the warm-started run is right by true residuals
    def prop(case: SymCase, which: str, k: int, rel: float) -> None:
        assume(k < case.n)
        tol = _tol(case)
        kw = dict(k=k, which=which, dense=False, tol=tol, seed=case.seed, maxiter=3000)
        cold = specop.eigsh(case.operator(backend), **kw)
        assume(cold.converged)
        E = case.rng(1).standard_normal((case.n, case.n))
        A2 = (case.A + rel * case.norm * (E + E.T) / (2 * np.sqrt(case.n))).astype(case.dtype).astype(np.float64)
        case2 = SymCase(A2, case.dtype, case.seed, case.structure, case.spectrum)
        warm = specop.eigsh(case2.operator(backend), v0=cold, **kw)
        if warm.converged:
            _check(case2, backend, warm, k, which, tol)
        else:  # only a near tie of a wanted and an unwanted eigenvalue may stop a restarted run
            V = backend.to_numpy(warm.eigenvectors).astype(np.float64)
            resid = np.linalg.norm(A2 @ V - V * warm.eigenvalues, axis=0)
            assert not np.all(resid <= np.maximum(tol * np.abs(warm.eigenvalues), 100 * case.eps * case2.norm))

    # each example is two restarted runs: few examples (JAX and array-api-strict fewer still)
    few = backend.name in ("jax", "array_api_strict")
    run(backend, prop, symmetric_matrices(min_size=2, max_size=20), st.sampled_from(WHICH),
        st.sampled_from((1, 3)), st.sampled_from((0.0, 1e-6, 1e-3)), max_examples=8 if few else 30)


def _gapped(n: int = 300, seed: int = 0) -> np.ndarray:
    """A random orthogonal similarity of 6 top eigenvalues in [1.1, 1.5] over a bulk in [0, 1]."""
    rng = np.random.default_rng(seed)
    d = np.concatenate([np.linspace(1.1, 1.5, 6), rng.uniform(0.0, 1.0, n - 6)])
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * d) @ Q.T


def test_warm_start_costs_far_fewer_products(backend):
    A = _gapped()
    op = specop.DenseOperator(backend.asarray(A))
    cold = specop.eigsh(op, k=6, seed=1)
    same = specop.eigsh(op, k=6, seed=1, v0=cold)
    E = np.random.default_rng(2).standard_normal(A.shape)
    op2 = specop.DenseOperator(backend.asarray(A + 1e-7 * (E + E.T)))
    cold2 = specop.eigsh(op2, k=6, seed=1)
    warm2 = specop.eigsh(op2, k=6, seed=1, v0=cold)
    assert cold.converged and same.converged and cold2.converged and warm2.converged
    assert same.matvecs <= 0.5 * cold.matvecs, (same.matvecs, cold.matvecs)
    assert warm2.matvecs <= 0.6 * cold2.matvecs, (warm2.matvecs, cold2.matvecs)
    np.testing.assert_allclose(warm2.eigenvalues, cold2.eigenvalues, rtol=1e-10)
    # an (n, j) block of the same vectors starts from the same vector: the same run
    block = specop.eigsh(op2, k=6, seed=1, v0=cold.eigenvectors)
    np.testing.assert_array_equal(block.eigenvalues, warm2.eigenvalues)
    assert block.matvecs == warm2.matvecs


def test_multiplicity_check_finds_copies_with_a_warm_start(backend):
    # the start block holds one copy of a triple top eigenvalue: its Krylov space (invariant after
    # 4 steps) holds 4 converged pairs, one copy; the multiplicity check must find the other two
    n = 60
    rng = np.random.default_rng(3)
    d = np.concatenate([[5.0, 5.0, 5.0, 4.0, 3.5], rng.uniform(-1.0, 1.0, n - 5)])
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * d) @ Q.T
    op = specop.DenseOperator(backend.asarray(A))
    block = backend.asarray(Q[:, [0, 3, 4, 5]])
    res = specop.eigsh(op, k=4, v0=block, seed=0, dense=False, ncv=20)
    assert res.converged and res.verified
    np.testing.assert_allclose(res.eigenvalues, [4.0, 5.0, 5.0, 5.0], rtol=1e-10)
    off = specop.eigsh(op, k=4, v0=block, seed=0, dense=False, ncv=20, verify=False)
    assert off.eigenvalues[-2] < 4.5  # without the check the copies are missed: the check found them


def test_bad_warm_starts_are_refused_naming_v0(backend):
    A = _gapped(40)
    op = specop.DenseOperator(backend.asarray(A))

    no_vectors = specop.eigsh(op, k=2, seed=0, dense=False, return_eigenvectors=False)
    other_size = specop.eigsh(specop.DenseOperator(backend.asarray(_gapped(30))), k=2, seed=0, dense=False)
    with pytest.raises(ValueError, match=r"v0.*without eigenvectors"):
        specop.eigsh(op, k=2, v0=no_vectors)
    with pytest.raises(ValueError, match=r"v0.*n = 40"):
        specop.eigsh(op, k=2, v0=other_size)
    with pytest.raises(ValueError, match=r"v0.*at least one vector"):
        specop.eigsh(op, k=2, v0=backend.asarray(np.zeros((40, 0))))
    with pytest.raises(ValueError, match=r"v0.*column 1"):
        specop.eigsh(op, k=2, v0=backend.asarray(np.stack([np.ones(40), np.zeros(40)], 1)))
    with pytest.raises(ValueError, match=r"v0.*sum"):
        specop.eigsh(op, k=2, v0=backend.asarray(np.stack([np.ones(40), -np.ones(40)], 1)))
    with pytest.raises(ValueError, match=r"v0.*expects input of shape"):
        specop.eigsh(op, k=2, v0=backend.asarray(np.ones((30, 2))))
    if backend.name in ("numpy", "torch"):  # a float32 result on a float64 operator
        single = specop.eigsh(specop.DenseOperator(backend.asarray(A, "float32")), k=2, seed=0, dense=False)
        with pytest.raises(ValueError, match=r"v0.*float64 operator"):
            specop.eigsh(op, k=2, v0=single)
    if backend.name != "numpy":  # a numpy result on another backend's operator
        host = specop.eigsh(specop.DenseOperator(A), k=2, seed=0, dense=False)
        with pytest.raises(TypeError, match="v0"):
            specop.eigsh(op, k=2, v0=host)


def test_tracker_on_a_tiny_torch_model():
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, hessian

    from specop.curvature.torch import HessianOperator

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    loss_fn = torch.nn.CrossEntropyLoss()
    H = HessianOperator(model, loss_fn, (X, y))
    tracker = specop.Tracker(H, k=3, tol=1e-10, seed=0, dense=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    names = [n for n, _ in model.named_parameters()]
    for _ in range(4):
        res = tracker.update()
        params = {n: p.detach() for n, p in model.named_parameters()}
        shapes = [params[n].shape for n in names]

        def f(theta, shapes=shapes):
            chunks = torch.split(theta, [int(np.prod(s)) for s in shapes])
            ps = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
            return loss_fn(functional_call(model, ps, (X,)), y)

        theta = torch.cat([params[n].reshape(-1) for n in names])
        exact = np.linalg.eigvalsh(hessian(f)(theta).numpy())[-3:]
        np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-8, atol=1e-12)
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    assert [r.warm for r in tracker.history] == [False, True, True, True]
    assert tracker.eigenvalues.shape == (4, 3) and all(r.converged for r in tracker.history)
    assert tracker.matvecs == sum(r.matvecs for r in tracker.history)


def test_tracker_on_a_tiny_jax_function():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from specop.curvature.jax import HessianOperator

    X = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)))

    def loss(params, batch):
        return jnp.mean(jnp.tanh(batch @ params["w"]) ** 2) + 0.1 * jnp.sum(params["w"] ** 4)

    state = {"params": {"w": jnp.asarray(np.random.default_rng(1).standard_normal((3, 2)))}}
    tracker = specop.Tracker(lambda: HessianOperator(loss, state["params"], X), k=2, tol=1e-10, seed=0,
                             dense=False)
    grad = jax.grad(loss)
    for _ in range(3):
        res = tracker.update()
        flat, unravel = jax.flatten_util.ravel_pytree(state["params"])
        exact = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda t, u=unravel: loss(u(t), X))(flat)))[-2:]
        np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-8, atol=1e-12)
        state["params"] = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state["params"], grad(state["params"], X))
    assert [r.warm for r in tracker.history] == [False, True, True]


def test_tracker_refuses_bad_arguments():
    with pytest.raises(TypeError, match="operator"):
        specop.Tracker(3.0, k=1)
    with pytest.raises(TypeError, match="v0"):
        specop.Tracker(specop.aslinearoperator(np.eye(3)), k=1, v0=np.ones(3))


def test_tracking_howto_page_runs(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "howto" / "tracking.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 2
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/howto/tracking.md block {i}", "exec"), ns)  # the page's own code
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("(3, 3) ") and out[-1] == "[False, True, True]"
    hist = ns["tracker"].history
    assert [r.warm for r in hist] == [False, True, True] and all(r.converged and r.verified for r in hist)
