"""Smoke test of the benchmark package: the cheapest script runs with ``--quick`` and its JSON renders.

Peers (curvlinops, PyHessian, hessian-eigenthings, matfree) are not installed in the
test environment: the script must skip their rows cleanly. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent


def test_operators_quick_writes_json_that_renders(tmp_path):
    out = tmp_path / "operators.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.operators", "--quick", "--threads", "1",
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["tables"][0]["rows"]
    methods = [r[2] for r in rows]
    assert "autograd gradient (reference)" in methods
    assert any(m.startswith("specop") and m.endswith("matvec") for m in methods)
    assert all(r[1] == 3466 and r[3] > 0 and r[4] > 0 for r in rows)
    assert any(g["name"].startswith("HVP/grad") for g in report["goals"])
    sys.path.insert(0, str(ROOT))
    from benchmarks.report import build

    page = build(tmp_path)
    assert "| digits MLP f64 | 3466 | autograd gradient (reference) |" in page
    assert "GPU rows were not measured" in page
