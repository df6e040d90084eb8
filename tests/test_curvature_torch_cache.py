"""HessianOperator's gradient-graph cache: same products, rebuilt when the model changes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from specop.curvature.torch import HessianOperator  # noqa: E402


def _problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    X, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    return model, torch.nn.CrossEntropyLoss(), (X, y)


def test_cached_graph_gives_the_uncached_products_and_follows_parameter_updates():
    model, loss, data = _problem()
    cached = HessianOperator(model, loss, data)
    plain = HessianOperator(model, loss, data, cache_graph=False)
    assert cached.cache_graph and not plain.cache_graph
    V = torch.randn(cached.shape[0], 3, dtype=torch.float64)
    for _ in range(2):  # the second product reuses the graph
        torch.testing.assert_close(cached.matmat(V), plain.matmat(V), rtol=1e-13, atol=0)
    before = cached.matmat(V)
    with torch.no_grad():
        model[0].weight.mul_(1.1)  # an in-place update bumps the version: the graph is rebuilt
    after = cached.matmat(V)
    torch.testing.assert_close(after, plain.matmat(V), rtol=1e-13, atol=0)
    assert not torch.allclose(before, after)


def test_cache_is_off_by_default_for_several_batches():
    model, loss, (X, y) = _problem()
    H = HessianOperator(model, loss, [(X[:6], y[:6]), (X[6:], y[6:])])
    assert not H.cache_graph


def test_cached_products_are_bit_identical_to_the_first_and_leave_the_model_alone():
    # the first product builds the graph on the full path (mode switch, state restore); later ones
    # take the shortcut: the same bits, and the model's mode and buffers are untouched either way
    model, loss, data = _problem()
    model.train()
    H = HessianOperator(model, loss, data)
    v = torch.randn(H.shape[0], dtype=torch.float64)
    first = H.matvec(v)
    for _ in range(3):
        assert torch.equal(H.matvec(v), first)
    assert model.training and all(m.training for m in model.modules())
    grown = [data]  # a user's list of batches that grows after construction is read again
    G = HessianOperator(model, loss, grown, cache_graph=True)
    G.matvec(v)
    X, y = data
    grown.append((X[:5], y[:5]))
    both = HessianOperator(model, loss, [data, (X[:5], y[:5])], cache_graph=False)
    torch.testing.assert_close(G.matvec(v), both.matvec(v), rtol=1e-13, atol=0)
