"""Every docs example runs (shortened with ``--quick``) and writes its figure."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
# The digits examples spend hundreds of Hessian/GGN products even when shortened.
SLOW = {"outliers", "hessian_vs_ggn"}


@pytest.mark.parametrize("name", [
    pytest.param(p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
    for p in sorted(EXAMPLES.glob("*.py"))
])
def test_example_runs_quick(name, tmp_path, monkeypatch):
    if name in SLOW:
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
