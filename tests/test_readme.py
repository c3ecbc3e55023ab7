"""The README's tutorial file is real: it runs, and says what the README says it says."""

from __future__ import annotations

import io
import re
from pathlib import Path

from gradcheck.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _tutorial_file() -> str:
    text = README.read_text()
    section = text.split("## Tutorial: check your own derivation", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_tutorial_file_gives_the_output_the_readme_shows(tmp_path):
    path = tmp_path / "test_my_layer.py"
    path.write_text(_tutorial_file())
    out = io.StringIO()
    code = main(["verify", str(path), "--seed", "1", "--max-examples", "30"], out=out)
    assert code == 1
    text = out.getvalue()
    assert "sigmoid_layer        x, w, b" in text
    assert "gradcheck: sigmoid_layer_buggy FAILED (float64)" in text
    assert "dims: N=1, D_in=1, D_out=1" in text
    assert "1 passed, 1 failed, 0 errors" in text
