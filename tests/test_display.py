"""Reports as pictures: the heatmap grid, the SVG, the notebook display, the --html page.

The pages are read back with html.parser and xml.etree, so the claims (self-contained,
well-formed, outlines on exactly the mismatched elements) are checked on every run; a real
browser renders the page where one is installed (test_browser.py).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheck import Derivation, check
from gradcheck.cli import main
from gradcheck.display.grid import gradient_grid, mismatched_elements
from gradcheck.display.svg import PALETTE, colour

SVG_NS = "{http://www.w3.org/2000/svg}"
HERE = Path(__file__).parent


def relu_mask_from_gradient(h, grad_output):
    """Seed 001's mistake in the ReLU alone: the mask from the gradient, not from h."""
    grad_h = grad_output.copy()
    grad_h[grad_h < 0] = 0
    return {"h": grad_h}


def relu_backward(h, grad_output):
    return {"h": grad_output * (h > 0)}


def _relu(backward) -> Derivation:
    return Derivation(
        name="relu_step",
        forward=lambda h: torch.relu(h),
        backward=backward,
        shapes={"h": ("N", "H")},
        wrt=["h"],
    )


@pytest.fixture(scope="module")
def seed001_relu():
    """(report, h, upstream) of seed 001's mask at a 6 x 9 point."""
    rng = np.random.default_rng(3)
    h, upstream = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    report = check(_relu(relu_mask_from_gradient), {"h": h}, grad_output=upstream)
    assert report.verdict == "fail"
    return report, h, upstream


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.tags


def _svgs(html: str) -> list[ET.Element]:
    """Every <svg> in the page, parsed as XML: a malformed one raises."""
    return [ET.fromstring(text) for text in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def _outlined(svg: ET.Element) -> set[tuple[int, int]]:
    path = svg.find(f".//{SVG_NS}path[@class='mismatch']")
    if path is None:
        return set()
    return {tuple(map(int, cell.split(","))) for cell in path.get("data-cells", "").split()}


def _path_origins(d: str) -> list[tuple[float, float]]:
    """Where each square of a path starts, resolving the relative moves."""
    origins, x, y = [], 0.0, 0.0
    for command, a, b in re.findall(r"([Mm])(-?[\d.]+) (-?[\d.]+)", d):
        x, y = (float(a), float(b)) if command == "M" else (x + float(a), y + float(b))
        origins.append((x, y))
    return origins


def assert_self_contained(html: str) -> None:
    for tag, attrs in _tags(html):
        assert tag not in ("script", "link", "img", "iframe", "object"), tag
        for key, value in attrs.items():
            if key == "xmlns":  # a namespace name, never fetched
                continue
            assert "://" not in (value or ""), (tag, key, value)
    assert "url(" not in html and "@import" not in html


# -- the grid -------------------------------------------------------------------------------


def test_grid_keeps_every_element_of_a_small_gradient_and_marks_exactly_its_mismatches():
    hand = np.arange(12.0).reshape(3, 4)
    reference = hand.copy()
    reference[1, 2] += 5.0
    reference[2, 0] += 1e-12  # within the tolerance: not a mismatch
    grid = gradient_grid(hand, reference, 1e-9)
    assert grid.block == (1, 1)
    assert np.argwhere(grid.mismatched).tolist() == [[1, 2]]
    assert grid.worst == (1, 2) and grid.index_text(1, 2) == "(1, 2)"


def test_grid_of_a_rank_4_gradient_shows_the_slice_holding_the_greatest_difference():
    hand = np.zeros((2, 3, 5, 6))
    reference = hand.copy()
    reference[0, 0, 0, 0] = 1.0
    reference[1, 2, 3, 4] = 7.0
    grid = gradient_grid(hand, reference, 0.1)
    assert grid.lead == (1, 2) and grid.hand.shape == (5, 6)
    assert grid.index_text(*grid.worst) == "(1, 2, 3, 4)"
    assert (grid.mismatched_total, grid.mismatched_shown) == (2, 1)


def test_downsampled_grid_keeps_the_worst_element_and_outlines_only_blocks_with_a_mismatch():
    rng = np.random.default_rng(0)
    hand = rng.standard_normal((1000, 100))
    reference = hand.copy()
    reference[517, 33] += 1.0  # the worst
    reference[:, 50] += 1e-3
    allowed = np.full(hand.shape, 1e-6)
    grid = gradient_grid(hand, reference, allowed)
    assert grid.hand.shape[0] <= 40 and grid.hand.shape[1] <= 40 and grid.downsampled
    assert grid.index_text(*grid.worst) == "(517, 33)"
    bad = mismatched_elements(hand, reference, allowed)
    for r, c in np.ndindex(grid.hand.shape):
        rows = slice(r * grid.block[0], (r + 1) * grid.block[0])
        cols = slice(c * grid.block[1], (c + 1) * grid.block[1])
        assert grid.mismatched[r, c] == bad[rows, cols].any()


def test_grid_of_a_scalar_and_of_a_vector_is_one_row():
    assert gradient_grid(np.float64(1.0), np.float64(2.0), 0.0).mismatched.tolist() == [[True]]
    grid = gradient_grid(np.arange(5.0), np.zeros(5), 0.5)
    assert grid.mismatched.tolist() == [[False, True, True, True, True]]
    assert grid.index_text(0, 3) == "(3,)"


def test_a_nan_in_the_hand_gradient_is_a_mismatch_and_the_worst_element():
    hand = np.array([[1.0, np.nan], [3.0, 4.0]])
    grid = gradient_grid(hand, np.array([[1.0, 2.0], [3.0, 5.0]]), 1e-9)
    assert grid.worst == (0, 1) and grid.mismatched.sum() == 2


# -- the palette ------------------------------------------------------------------------------


def test_palette_is_diverging_blue_white_red_with_no_green():
    assert (colour(-1.0), colour(0.0), colour(1.0)) == ("#2166ac", "#f7f7f7", "#b2182b")
    for position in np.linspace(-1, 1, 33):
        value = colour(float(position))
        r, g, b = (int(value[i : i + 2], 16) for i in (1, 3, 5))
        assert not (g > r + 8 and g > b + 8), value  # never a green hue
    assert len(PALETTE) % 2 == 1  # a white middle


# -- the notebook display -----------------------------------------------------------------------


def test_seed001_picture_outlines_exactly_where_the_mask_differs(seed001_relu):
    report, h, upstream = seed001_relu
    html = report._repr_html_()
    wrong = ((h > 0) & (upstream < 0)) | ((h < 0) & (upstream > 0))
    expected = {(int(r), int(c)) for r, c in np.argwhere(wrong)}
    svgs = _svgs(html)
    assert [svg.get("data-role") for svg in svgs] == ["hand", "reference", "difference"]
    for svg in svgs:
        assert _outlined(svg) == expected
        path = svg.find(f".//{SVG_NS}path[@class='mismatch']")
        assert path is not None
        assert len(_path_origins(path.get("d", ""))) == len(expected)
    assert report.problems[0].mismatch is not None
    assert report.problems[0].mismatch.mismatched == len(expected)
    assert "mask comes from the wrong tensor" in html  # the diagnosis
    assert "Failing example" in html


def test_outline_squares_sit_on_the_cells_they_name(seed001_relu):
    report, _, _ = seed001_relu
    svg = _svgs(report._repr_html_())[0]
    path = svg.find(f".//{SVG_NS}path[@class='mismatch']")
    assert path is not None
    cells = [tuple(map(int, cell.split(","))) for cell in path.get("data-cells", "").split()]
    origins = _path_origins(path.get("d", ""))
    pitches = {(x - origins[0][0]) / max(c - cells[0][1], 1) for (x, _), (_, c) in
               zip(origins[1:], cells[1:], strict=True) if c != cells[0][1]}  # fmt: skip
    assert len(pitches) == 1  # one cell size: every square is at its own cell


def test_difference_heatmap_has_a_scale_from_minus_to_plus_the_greatest_difference(
    seed001_relu,
):
    report, _, _ = seed001_relu
    difference = _svgs(report._repr_html_())[2]
    scale = difference.find(f".//{SVG_NS}g[@class='scale']")
    assert scale is not None
    labels = [text.text for text in scale.iter(f"{SVG_NS}text")]
    pair = report.gradients["h"]
    largest = float(np.max(np.abs(pair.hand - pair.reference)))
    assert labels == [f"{-largest:.4g}", "0", f"{largest:.4g}"]
    assert len(scale.findall(f"{SVG_NS}rect")) > 10  # the colour bins


def test_report_html_is_self_contained_and_escapes_what_the_user_named(seed001_relu):
    report, _, _ = seed001_relu
    html = report._repr_html_()
    assert_self_contained(html)
    from dataclasses import replace

    hostile = replace(report, derivation="<script>alert(1)</script>")
    assert "<script>" not in hostile._repr_html_()


def test_a_passing_report_is_one_line_without_pictures():
    rng = np.random.default_rng(4)
    report = check(_relu(relu_backward), {"h": rng.standard_normal((3, 4))})
    assert report.verdict == "pass"
    html = report._repr_html_()
    assert "<svg" not in html and "<br" not in html and "<li" not in html
    assert 'data-verdict="pass"' in html and "relu_step" in html


def test_checking_draws_nothing_until_the_report_is_displayed(monkeypatch):
    """Rendering costs milliseconds a report: check and verify must never pay it."""
    import gradcheck.display as display
    from gradcheck import verify

    def refuse(*args, **kwargs):
        raise AssertionError("rendered during a check")

    monkeypatch.setattr(display, "report_html", refuse)
    monkeypatch.setattr(display, "figure_html", refuse)
    report = verify(_relu(relu_mask_from_gradient), max_examples=5, seed=0)
    assert report.verdict == "fail" and str(report)
    with pytest.raises(AssertionError, match="rendered"):
        report._repr_html_()  # the patch is what display would call


def test_training_report_draws_the_failing_step_updates():
    from gradcheck.training import check_step
    from gradcheck.training.systems import SYSTEMS, bugs

    start = next(s for s in SYSTEMS if s.name == "numpy_hand_sgd").start(0)
    report = check_step(bugs.SEED001_WRONG_MASK, start, steps=3)
    assert report.verdict == "fail"
    html = report._repr_html_()
    assert "hand update" in html and "step 1" in html
    svgs = _svgs(html)
    assert svgs
    mismatch = next(p.mismatch for p in report.problems if p.parameter == "w1")
    assert mismatch is not None
    figure_w1 = next(svg for svg in svgs if svg.get("data-role") == "hand")
    assert len(_outlined(figure_w1)) == mismatch.mismatched


# -- the --html page --------------------------------------------------------------------------


def test_verify_html_page_has_every_row_the_pictures_and_the_reproduce_command(tmp_path, capsys):
    page = tmp_path / "report.html"
    target = "tests/mutants.py:seed001_mask_from_gradient"
    status = main(
        ["verify", target, "tests/mutants.py:correct_mask_less", "--seed", "0",
         "--max-examples", "5", "--html", str(page), "--json"]
    )  # fmt: skip
    assert status == 1
    payload = json.loads(capsys.readouterr().out)  # --json output stays pure JSON
    names = [entry["name"] for entry in payload["results"]]
    html = page.read_text(encoding="utf-8")
    assert_self_contained(html)
    rows = [attrs for tag, attrs in _tags(html) if tag == "tr" and "data-verdict" in attrs]
    assert len(rows) == len(names)
    for name in names:
        assert f">{name}<" in html
    assert "gradcheck verify tests/mutants.py:seed001_mask_from_gradient --seed 0" in html
    # one failing parameter, three panels, at the shrunk example and at a larger failing
    # point (the shrunk one is 1x1: too small to show a pattern)
    assert len(_svgs(html)) == 6
    assert "The same failure at a larger failing point" in html
    assert html.startswith("<!DOCTYPE html>")


def test_verify_html_into_a_missing_directory_is_a_usage_error_before_any_work(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "report.html"
    assert main(["verify", "--html", str(missing)]) == 2
    error = capsys.readouterr().err
    assert "does not exist" in error and "nowhere" in error
    assert main(["verify", "--html", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_ipython_plain_text_display_is_the_report_text(seed001_relu):
    pretty = pytest.importorskip("IPython.lib.pretty")
    report, _, _ = seed001_relu
    assert pretty.pretty(report) == str(report)


def test_page_shows_an_error_without_a_report_as_its_message_and_links_it():
    from dataclasses import dataclass

    from gradcheck.display.page import page_html

    @dataclass(frozen=True)
    class Row:
        derivation: object
        verdict: str
        message: str
        report: object
        elapsed: float

    broken = _relu(relu_backward)
    html = page_html([Row(broken, "error", "forward raised <ValueError>", None, 0.5)])
    assert_self_contained(html)
    assert "forward raised &lt;ValueError&gt;" in html
    assert 'href="#derivation-0"' in html and 'id="derivation-0"' in html
    assert "0 passed, 0 failed, 1 errors" in html
