"""``import specop`` stays free of torch/jax/cupy; only the backend seams may import them at module level."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import specop

HEAVY = ("torch", "jax", "jaxlib", "cupy")
ROOT = Path(specop.__file__).parent
#: Packages allowed to import an array library at module level.
EXEMPT = (ROOT / "backends", ROOT / "curvature" / "torch", ROOT / "curvature" / "jax")


def test_import_loads_no_heavy_library():
    code = (
        "import json, sys\n"
        "import specop, specop.operators, specop.linalg, specop.random\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import specop loaded {loaded}"


def _top_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Modules imported by statements run at import time (top level, inside top-level try/if/with)."""
    found: list[tuple[int, str]] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                todo += getattr(node, field, [])
            todo += [stmt for handler in getattr(node, "handlers", []) for stmt in handler.body]
    return found


def test_no_module_level_heavy_imports_outside_backends():
    offenders = []
    files = sorted(ROOT.rglob("*.py"))
    assert ROOT / "operators" / "base.py" in files
    for path in files:
        if any(path.is_relative_to(exempt) for exempt in EXEMPT):
            continue
        for lineno, module in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if module.split(".")[0] in HEAVY:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{lineno} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_scan_finds_nested_top_level_imports():
    src = ("try:\n    import torch\nexcept ImportError:\n    pass\n"
           "if True:\n    from jax import numpy\ndef f():\n    import cupy\n")
    assert sorted(m for _, m in _top_level_imports(ast.parse(src))) == ["jax", "torch"]
