"""docs/notebook.ipynb runs from top to bottom and shows what it says it shows.

Executed with nbclient in a Jupyter kernel of this very environment (ipykernel, from the
test extra), so that it never rots; the saved copy keeps its outputs for the web.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).parent.parent / "docs" / "notebook.ipynb"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _kernel():
    """A kernel of this very Python (ipykernel's built-in spec): a python3 kernelspec that a
    user installed elsewhere must not run the notebook against another environment."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    return KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )


def _outputs(cell) -> tuple[str, list[str]]:
    """(the cell's printed text, the HTML of each display)."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    html = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    return text, html


def _report(htmls: list[str]) -> str:
    (report,) = [h for h in htmls if "gradcheck-report" in h]
    return report


def _outlined(report: str, role: str) -> set[tuple[int, int]]:
    svg = next(
        ET.fromstring(text)
        for text in re.findall(r"<svg\b.*?</svg>", report, flags=re.S)
        if f'data-role="{role}"' in text
    )
    path = svg.find(f".//{SVG_NS}path[@class='mismatch']")
    assert path is not None
    return {tuple(map(int, cell.split(","))) for cell in path.get("data-cells", "").split()}


def test_saved_notebook_keeps_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert sum("gradcheck-report" in str(cell.outputs) for cell in code) >= 5


def _runs_without_an_error(executed):
    errors = [o for cell in executed for o in cell.outputs if o.output_type == "error"]
    assert errors == []


def _seed001_fails_with_its_diagnosis_and_a_progress_bar(executed):
    cell = next(c for c in executed if "seed001 = Derivation(" in c.source)
    _, htmls = _outputs(cell)
    report = _report(htmls)
    assert 'data-verdict="fail"' in report
    assert "the mask comes from the wrong tensor" in report
    progress = [h for h in htmls if "gradcheck-progress" in h]
    assert progress and "FAIL" in progress[-1]


def _seed001_picture_outlines_the_units_where_the_mask_is_wrong(executed):
    picture = next(c for c in executed if "at_a_point = check(" in c.source)
    units = next(c for c in executed if "dropped = np.flatnonzero" in c.source)
    text, _ = _outputs(units)
    dropped, leaked = (
        {int(u) for u in re.findall(r"\d+", line.split(":", 1)[1])}
        for line in text.strip().splitlines()
    )
    assert dropped  # the case the notebook is about: h > 0, upstream < 0
    outlined = _outlined(_report(_outputs(picture)[1]), "hand")
    assert {column for _, column in outlined} == dropped | leaked
    assert len(outlined) == 12 * len(dropped | leaked)  # whole columns: every input row


def _relu_picture_outlines_where_the_mask_differs(executed):
    cell = next(c for c in executed if "relu_seed001, {" in c.source)
    text, htmls = _outputs(cell)
    differs = int(re.search(r"the mask differs at (\d+) of", text).group(1))
    report = _report(htmls)
    for role in ("hand", "reference", "difference"):
        assert len(_outlined(report, role)) == differs
    assert f"Mismatched elements: {differs} / 192" in report


def _fixed_backward_and_the_course_layer_pass_in_one_line(executed):
    fixed = next(c for c in executed if "backward_fixed" in c.source)
    text, htmls = _outputs(fixed)
    assert "at the point above: pass" in text
    assert 'data-verdict="pass"' in _report(htmls) and "<svg" not in _report(htmls)
    layer = next(c for c in executed if "standard_layer(" in c.source)
    report = _report(_outputs(layer)[1])
    assert 'data-verdict="pass"' in report and "affine" in report


def test_example_notebook_runs_and_shows_the_bug_its_fix_and_a_course_layer(tmp_path):
    """One test, so that pytest-xdist runs the notebook (~15 s) once, not once a worker."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, km=_kernel()).execute(cwd=str(tmp_path))
    executed = [cell for cell in notebook.cells if cell.cell_type == "code"]
    _runs_without_an_error(executed)
    _seed001_fails_with_its_diagnosis_and_a_progress_bar(executed)
    _seed001_picture_outlines_the_units_where_the_mask_is_wrong(executed)
    _relu_picture_outlines_where_the_mask_differs(executed)
    _fixed_backward_and_the_course_layer_pass_in_one_line(executed)
