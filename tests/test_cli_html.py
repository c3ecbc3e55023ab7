"""``--html`` with worker processes: a report made in a worker carries everything that one
made in the command's own process carries (issue 20, goal 4): the smallest failing example,
the pictures, the localization."""

from __future__ import annotations

import io
import json
import re
import textwrap

from gradcheck.cli import main
from tests.worker_targets import WAITS_FOR_A_WORKER, gradcheck_verify, importers

# Three wrong backwards over matrices (so that each failure has a picture), one a
# straight-line numpy backward with one wrong line (so that it is localized).
FAILING = WAITS_FOR_A_WORKER + textwrap.dedent(
    """
    import numpy as np
    import torch
    from gradcheck import Derivation

    def square(x):
        return (x ** 2).sum()

    def halved(x):
        wait_for_a_worker()
        return {"x": x}

    def tanh_square(x):
        y = torch.tanh(x)
        return (y * y).sum()

    def tanh_square_backward(x):
        y = np.tanh(x)
        grad_y = 2 * y
        grad_x = grad_y * (1 + y ** 2)
        return {"x": grad_x}

    def scaled_rows(x, w):
        return (x @ w).sum()

    def scaled_rows_backward(x, w):
        ones = np.ones((x.shape[0], w.shape[1]))
        return {"x": ones @ w.T, "w": x.T @ ones * 2}

    a_halved = Derivation(name="a_halved", forward=square, backward=halved,
                          shapes={"x": ("N", "D")}, wrt=["x"])
    b_tanh = Derivation(name="b_tanh", forward=tanh_square, backward=tanh_square_backward,
                        shapes={"x": ("N", "D")}, wrt=["x"], backend="numpy")
    c_matmul = Derivation(name="c_matmul", forward=scaled_rows, backward=scaled_rows_backward,
                          shapes={"x": ("N", "D"), "w": ("D", "M")}, wrt=["x", "w"],
                          backend="numpy")
    d_negated = Derivation(name="d_negated", forward=square, backward=lambda x: {"x": -2 * x},
                           shapes={"x": ("N", "D")}, wrt=["x"])
    """
)


def _sections(page: str) -> dict[str, str]:
    """Each failure's section by derivation name, without the times (they differ by run)."""
    found = re.findall(r'<section id="[^"]+"><h2>([^<]+)</h2>(.*?)</section>', page, re.S)
    return {name: re.sub(r"\d+(\.\d+)? ?(s|ms)\b", "T", body) for name, body in found}


def test_a_report_made_in_a_worker_has_its_example_and_pictures(tmp_path):
    path = tmp_path / "failing.py"
    path.write_text(FAILING)
    argv = [str(path), "--max-examples", "10", "--seed", "4", "--json"]
    alone_page, spread_page = tmp_path / "alone.html", tmp_path / "spread.html"
    # -j 1 in this process (one torch start-up less), -j 2 as a user runs it
    alone_out = io.StringIO()
    assert main(["verify", *argv, "--html", str(alone_page), "-j", "1"], out=alone_out) == 1
    importers(tmp_path)
    spread = gradcheck_verify(
        *argv, "--html", str(spread_page), "-j", "2", wait_for_worker=True
    )  # fmt: skip
    assert spread.returncode == 1, spread.stderr
    assert importers(tmp_path) == 2  # the command and a worker, which verified some

    alone = _sections(alone_page.read_text())
    spread_sections = _sections(spread_page.read_text())
    assert list(alone) == ["a_halved", "b_tanh", "c_matmul", "d_negated"]
    for name, section in alone.items():
        assert 'class="gradcheck-figure"' in section, name
        assert "Smallest failing example" in section, name
        assert spread_sections[name] == section, f"{name}: the -j 2 section differs from -j 1"
    # The localization, in the JSON as in the message, is the worker's too.
    located = {r["name"]: r.get("localization") for r in json.loads(spread.stdout)["results"]}
    assert located == {
        r["name"]: r.get("localization") for r in json.loads(alone_out.getvalue())["results"]
    }
    assert located["b_tanh"] is not None and located["b_tanh"]["variable"] == "grad_x"


def test_a_report_that_does_not_pickle_crosses_without_its_example_and_says_so():
    import pickle
    from dataclasses import replace

    import numpy as np

    from gradcheck.report import Example, Report
    from gradcheck.runner import _packed, _unpacked

    example = Example(dims={"N": 2}, inputs={"x": np.ones(2)}, params={"act": lambda v: v})
    report = Report(derivation="lambda_param", verdict="fail", example=example)
    crossed = pickle.loads(_packed(report))
    assert crossed.example is None and crossed.verdict == "fail"
    assert "do not pickle" in crossed.notes[-1] and "-j 1" in crossed.notes[-1]
    whole = replace(report, example=replace(example, params={"act": "relu"}))
    assert pickle.loads(_packed(whole)).example.dims == {"N": 2}
    # bytes the command cannot read still leave it the worker's verdict and message
    assert _unpacked(("fail", "why", b"not a pickle", 1.5)) == ("fail", "why", None, 1.5)
