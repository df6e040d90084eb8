"""The code of the torch how-to pages runs, block after block, as a reader would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_plug_in_your_model_page_runs(capsys):
    blocks = _blocks(DOCS / "howto" / "model.md")
    assert len(blocks) >= 6
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/howto/model.md block {i}", "exec"), ns)  # the page's own code
    out = capsys.readouterr().out.split("\n")
    assert float(out[2]) < 1e-12  # the LM: DataLoader of 4 + 4 + 2 equals one batch of 10
    assert float(out[-3]) < 1e-6  # train mode: H = finite differences of gradient()
    assert out[-2] == "True True"  # refresh() after a plain attribute changed
