"""Every docs example runs (shortened with ``--quick``) and writes its figure."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
# Examples whose quick run is exercised (and its claim checked) by a dedicated test below.
CLAIMED = {"outliers"}


@pytest.mark.parametrize("name", [p.stem for p in sorted(EXAMPLES.glob("*.py")) if p.stem not in CLAIMED])
def test_example_runs_quick(name, tmp_path, monkeypatch):
    if name != "slq_vs_kpm":
        pytest.importorskip("torch")
    monkeypatch.setenv("SPECOP_FIGURES", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--quick"])
    ns = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "main" in ns


def test_slq_vs_kpm_quick_is_close_to_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECOP_FIGURES", str(tmp_path))
    ns = runpy.run_path(str(EXAMPLES / "slq_vs_kpm.py"))
    res = ns["main"](quick=True)
    assert res["slq_matvecs"] <= res["kpm_matvecs"] + 4 * 2  # equal budgets
    assert res["cdf_error"]["slq"] < 0.1 and res["cdf_error"]["kpm"] < 0.1


def _quick_main(name, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("SPECOP_FIGURES", str(tmp_path))
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"](quick=True)


def test_sharpness_lr_quick_reaches_edge_of_stability(tmp_path, monkeypatch):
    # Cohen et al. 2021: under full-batch GD the sharpness rises from below 2/eta and then hovers at 2/eta.
    res = _quick_main("sharpness_lr", tmp_path, monkeypatch)
    for lr, start, final in zip(res["lr"], res["initial"], res["final"], strict=True):
        assert start < 0.8 * (2 / lr)  # progressive sharpening has work to do
        assert 0.5 <= final / (2 / lr) <= 1.5
        assert final > 1.2 * start


def test_gradient_subspace_quick_gradient_in_top_eigenspace(tmp_path, monkeypatch):
    # Gur-Ari et al. 2018: after a short transient the gradient lies mostly in the top-k Hessian eigenspace.
    res = _quick_main("gradient_subspace", tmp_path, monkeypatch)
    assert res["k"] == 10 and res["random"] == pytest.approx(res["k"] / res["P"])
    assert all(0.0 <= f <= 1.0 + 1e-9 for f in res["fraction"])
    assert res["median_second_half"] > 0.3
    assert res["min_second_half"] > 50 * res["random"]


def test_negative_mass_quick_shrinks_early(tmp_path, monkeypatch):
    # Ghorbani et al. 2019: the negative eigenvalue mass of the Hessian shrinks early in training.
    res = _quick_main("negative_mass", tmp_path, monkeypatch)
    for key in ("negative_mass", "clearly_negative_mass"):
        start, end = res[key][0], res[key][-1]
        assert all(0.0 <= m <= 1.0 for m in res[key])
        assert end < 0.5 * start, (key, res[key])


def test_outliers_quick_shows_classes_minus_one_outliers(tmp_path, monkeypatch):
    # Papyan 2020: cross-entropy with C classes gives C - 1 outliers above the bulk, in G and in H,
    # on the specop command's model after its 300 gradient-descent steps
    res = _quick_main("outliers", tmp_path, monkeypatch)
    assert (tmp_path / "outliers.png").read_bytes()[:4] == b"\x89PNG"
    assert res[("G", 300)] == 9 and res[("H", 300)] == 9
