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


def _fresh(model, loss, data, V):
    return HessianOperator(model, loss, data, cache_graph=False) @ V


@pytest.mark.parametrize("edit", ["param-data", "buffer-data", "data-inplace", "param-replaced"])
def test_cache_sees_edits_that_bump_no_version_counter(edit):
    # p.data.mul_() bumps no version counter of p: the values are compared with a copy
    torch.manual_seed(1)
    layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)]
    if edit == "buffer-data":
        layers.insert(1, torch.nn.BatchNorm1d(5))
    model = torch.nn.Sequential(*layers).double()
    X, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    loss = torch.nn.CrossEntropyLoss()
    H = HessianOperator(model, loss, (X, y))
    V = torch.randn(H.shape[0], 2, dtype=torch.float64)
    before = H @ V
    if edit == "param-data":
        model[0].weight.data.mul_(3)
    elif edit == "buffer-data":
        model[1].running_var.data.mul_(4)
    elif edit == "data-inplace":
        X.mul_(2)
    else:
        model[-1].weight = torch.nn.Parameter(model[-1].weight.detach() * 2)
    after = H @ V
    torch.testing.assert_close(after, _fresh(model, loss, (X, y), V), rtol=1e-12, atol=0)
    assert not torch.allclose(before, after)


def test_refresh_after_state_the_cache_cannot_see():
    class Tempered(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3).double()
            self.temperature = 1.0  # a plain attribute: no tensor, nothing to watch

        def forward(self, x):
            return torch.tanh(self.lin(x)) / self.temperature

    torch.manual_seed(2)
    model = Tempered()
    X, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    loss = torch.nn.CrossEntropyLoss()
    H = HessianOperator(model, loss, (X, y))
    V = torch.randn(H.shape[0], 2, dtype=torch.float64)
    H @ V
    model.temperature = 0.5
    H.refresh()
    torch.testing.assert_close(H @ V, _fresh(model, loss, (X, y), V), rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_cached_graph_is_reused_while_nothing_changes(mode):
    # also with buffers (BatchNorm), which each pass restores: restoring unchanged buffers must not
    # count as a change (it did: the cache was rebuilt on every product of a model with buffers)
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3)).double()
    X, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    H = HessianOperator(model, torch.nn.CrossEntropyLoss(), (X, y), mode=mode)
    v = torch.randn(H.shape[0], dtype=torch.float64)
    first = H.matvec(v)
    graph = H._graphs[0]
    for _ in range(3):
        assert torch.equal(H.matvec(v), first)
    assert H._graphs[0] is graph  # not rebuilt
