"""The Python blocks of docs/howto/jax.md and README's JAX example run as written.

The how-to's blocks run in order in one namespace (later blocks reuse the first one's
model and data); a block whose first line is ``# not run`` is skipped, and a block
importing flax, equinox or optax is skipped when that package is missing.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_jax_howto_blocks_run():
    blocks = python_blocks((ROOT / "docs" / "howto" / "jax.md").read_text())
    assert len(blocks) >= 8
    namespace: dict = {}
    ran = 0
    for i, code in enumerate(blocks):
        if code.startswith("# not run"):
            continue
        needs = set(re.findall(r"^(?:import|from) (flax|equinox|optax)\b", code, flags=re.M))
        if any(importlib.util.find_spec(m) is None for m in needs):
            continue
        try:
            exec(compile(code, f"docs/howto/jax.md block {i}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"docs/howto/jax.md block {i} failed: {type(err).__name__}: {err}\n{code}") from err
        ran += 1
    assert ran >= 5


def test_readme_jax_example_runs():
    text = (ROOT / "README.md").read_text()
    block = next(b for b in python_blocks(text) if "specop.curvature.jax" in b)
    assert len(block.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(block, "README.md JAX example", "exec"), namespace)
    assert namespace["H"].shape == (24, 24)
