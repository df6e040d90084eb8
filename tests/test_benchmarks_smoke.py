"""Smoke test of the benchmark package: the cheapest script runs with ``--quick`` and its JSON renders.

Peers (curvlinops, PyHessian, hessian-eigenthings, matfree) are not installed in the
test environment: the script must skip their rows cleanly. No timing is asserted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level package of the repository, not installed
    sys.path.insert(0, str(ROOT))


def test_operators_quick_writes_json_that_renders(tmp_path, capsys):
    from benchmarks import operators
    from benchmarks.report import build

    out = tmp_path / "operators.json"
    from specop.cli.digits import make_mlp

    P = sum(p.numel() for p in make_mlp().parameters())
    operators.main(["--quick", "--no-jax", "--output", str(out)])
    assert f"| digits MLP f64 | {P} |" in capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["tables"][0]["rows"]
    methods = [r[2] for r in rows]
    assert "autograd gradient (reference)" in methods
    assert any(m.startswith("specop") and m.endswith("matvec") for m in methods)
    assert all(r[1] == P and r[3] > 0 and r[4] > 0 for r in rows)
    assert any(g["name"].startswith("HVP/grad") for g in report["goals"])
    page = build(tmp_path)
    assert f"| digits MLP f64 | {P} | autograd gradient (reference) |" in page
    assert "GPU rows were not measured" in page


def test_curvature_quick_measures_the_masked_lm_and_the_cache_check(tmp_path):
    from benchmarks import curvature

    out = tmp_path / "curvature.json"
    curvature.main(["--quick", "--output", str(out)])
    report = json.loads(out.read_text())
    lm, cache = report["tables"]
    assert [r[3] for r in lm["rows"]][:2] == ["autograd gradient (reference)", "specop HessianOperator matvec"]
    assert all(r[4] > 0 and r[5] > 0 for r in lm["rows"])
    assert 0 < cache["rows"][1][2] < 1  # the check is a part of a product
    assert {g["name"].split(" (")[0] for g in report["goals"]} >= {"masked-LM HVP/grad ≤ 2.5"}


def test_eigsh_wall_rows_count_products_and_agree_with_arpack(tmp_path):
    import numpy as np

    from benchmarks import eigsh_wall
    from benchmarks.report import build

    G = np.random.default_rng(0).standard_normal((300, 300))
    D = (G + G.T) / 2
    res = eigsh_wall.run(eigsh_wall.Counting(lambda X: D @ X, 300), 1)
    exact = np.linalg.eigvalsh(D)[-eigsh_wall.K:]
    assert set(res) == {"specop", "scipy ARPACK"}
    for products, wall, w in res.values():
        assert products > eigsh_wall.K and wall > 0
        assert np.allclose(w, exact, rtol=0, atol=1e-8 * np.abs(exact).max())
    report = eigsh_wall.Report("eigsh_wall", "eigsh wall", True, "cpu")
    report.table("t", ["matrix", "wall"]).add("dense", res["specop"][1])
    report.finish(str(tmp_path / "eigsh_wall.json"))
    assert "| dense |" in build(tmp_path)


def test_jax_calls_worker_times_a_first_call_and_counts_its_compiles(tmp_path):
    pytest.importorskip("jax")
    from benchmarks import jax_calls
    from benchmarks.report import build

    r = jax_calls.measure("trace Hutchinson", 40)
    assert set(r) == {"first", "later", "numpy", "compiles_first", "compiles_later"}
    assert r["first"] > 0 and r["later"] > 0 and r["numpy"] > 0
    assert r["compiles_first"] > 0  # a fresh process: the first call compiles its programs
    report = jax_calls.Report("jax_calls", "jax calls", True, "cpu")
    report.table("t", ["operation", "first call s"]).add("trace Hutchinson", r["first"])
    report.finish(str(tmp_path / "jax_calls.json"))
    assert "| trace Hutchinson |" in build(tmp_path)
