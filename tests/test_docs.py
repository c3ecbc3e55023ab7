"""The code in README.md and docs/*.md is real: every ```python block runs, in order, as a
reader would copy it, and every pasted output of a `gradcheck` command is what it prints.

Rules (generic, so that any page or section added later is covered):

- Each page runs on its own, top to bottom, in one namespace and a fresh temp dir as cwd (a
  reader working through one page in one session).
- A ```python block runs (sybil's Python evaluator). A block opened as
  ```python title="my_layers.py"``` is also written to that file before it runs, so that later
  blocks and commands can import or verify it; mkdocs-material shows the title as the file's
  name above the block.
- ``<!-- skip: next -->`` before a block marks a fragment; it is not run (sybil's skip).
- After a block runs, each ``test_*`` function it defined is called, as pytest would.
- A block opened as ```text title="output"``` is what the ```python block before it
  printed: it must appear in that block's printed text, timings aside.
- A ```console block whose first line is ``$ gradcheck ...`` is run with exactly those
  arguments; the rest of the block must appear in what it prints, timings aside (see
  ``_normalized``). A command naming a file the page did not write runs from the repository
  root (``tests/mutants.py``).

Sybil finds the blocks and runs the Python. Two things here are ours: running a pasted
command and comparing its output (sybil's evaluators run Python and doctests, not a CLI), and
one test per page rather than sybil's pytest collection (one item per block): a page's
blocks share a namespace, and ``pytest -n auto`` hands consecutive items of one file to
different workers.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from gradcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_PYTHON_INFO = re.compile(r'python(?:[ \t]+title="(?P<title>[^"]+)")?[ \t]*$\n', re.MULTILINE)
_OUTPUT_INFO = re.compile(r'text[ \t]+title="output"[ \t]*$\n', re.MULTILINE)
_TIME = re.compile(r"\b\d+(?:\.\d+)?(?:e-?\d+)? ?s\b")
_INCONCLUSIVE = re.compile(r"\b\d+ of (\d+) examples were inconclusive")


def _normalized(text: str) -> str:
    """Timings out, and with them the widths of the table's columns. The count of
    inconclusive examples too: it moved from 1 to 2 of 90 when other checks had run first in
    the same process (rounding at a kink point; the verdict and the example did not move)."""
    text = _INCONCLUSIVE.sub(r"<n> of \1 examples were inconclusive", _TIME.sub("<time>", text))
    text = re.sub(r"-{2,}", "--", re.sub(r" {2,}", "  ", text))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


_python = PythonEvaluator()
_printed: dict[str, str] = {}  # page -> what its last ```python block printed


def _run_python(example: Example) -> None:
    """Write the block to its titled file, run it, then call the tests it defined."""
    title = example.region.lexemes.get("title")
    if title:
        Path(title).write_text(example.parsed)
    defined_before = set(example.namespace)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            _python(example)
            for name in sorted(set(example.namespace) - defined_before):
                if name.startswith("test_") and callable(example.namespace[name]):
                    example.namespace[name]()
    except Exception as exc:
        raise AssertionError(
            f"the ```python block at {_where(example)} fails: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        _printed[example.path] = printed.getvalue()
        sys.stdout.write(printed.getvalue())  # shown by pytest when the page fails


def _compare_output(example: Example) -> None:
    """A pasted ```text title="output"``` block: in what the block before it printed."""
    printed = _printed.get(example.path, "")
    assert _normalized(str(example.parsed)) in _normalized(printed), (
        f"{_where(example)}: the ```python block before it now prints:\n{printed}"
    )


def _run_command(example: Example) -> None:
    """A pasted `$ gradcheck ...` and its output: run it, and find the output in what it prints."""
    first, _, expected = str(example.parsed).partition("\n")
    if not first.startswith("$ gradcheck "):
        return  # another command (`time python ...`): shown, not run
    arguments = shlex.split(first[2:])[1:]
    target = next((a for a in arguments if a.endswith(".py") or ".py:" in a), None)
    here = os.getcwd()
    if target is not None and not Path(target.split(":")[0]).exists():
        os.chdir(ROOT)  # a file of this repository, not one the page wrote
    try:
        out = io.StringIO()
        main(arguments, out=out)
    finally:
        os.chdir(here)
    assert _normalized(expected) in _normalized(out.getvalue()), (
        f"{_where(example)}: `{first[2:]}` now prints:\n{out.getvalue()}"
    )


def _python_blocks(document: Document) -> Iterator[Region]:
    for region in RawFencedCodeBlockLexer(info_pattern=_PYTHON_INFO)(document):
        region.parsed = region.lexemes["source"]
        region.evaluator = _run_python
        yield region


def _output_blocks(document: Document) -> Iterator[Region]:
    for region in RawFencedCodeBlockLexer(info_pattern=_OUTPUT_INFO)(document):
        region.parsed = region.lexemes["source"]
        region.evaluator = _compare_output
        yield region


SYBIL = Sybil(
    parsers=[
        _python_blocks,
        _output_blocks,
        CodeBlockParser("console", _run_command),
        SkipParser(),
    ]
)


def _where(example: Example) -> str:
    return f"{Path(example.path).relative_to(ROOT)} line {example.line}"


@pytest.fixture
def reader_dir(tmp_path, monkeypatch):
    """A temp dir as cwd and on sys.path; modules imported from it are forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(tmp_path) in str(getattr(module, "__file__", "") or ""):
            del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_block_of_a_page_runs_in_order_and_its_pasted_outputs_are_printed(page, reader_dir):
    document = SYBIL.parse(page)
    document.namespace["__name__"] = page.stem.replace("-", "_")
    for example in document:
        example.evaluate()


def _fences(text: str, language: str) -> int:
    """Blocks a reader takes for `language` (```Python, ```py for python), however written."""
    aliases = "python|py" if language == "python" else language
    return len(re.findall(rf"^```[ \t]*(?:{aliases})\b", text, re.MULTILINE | re.IGNORECASE))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_python_and_console_block_of_a_page_is_one_the_runner_finds(page):
    """A block whose opening line the parsers do not read (```Python, a title without quotes)
    would be shown and never run."""
    found = [example.region.evaluator for example in SYBIL.parse(page)]
    text = page.read_text()
    unread = f"{page.name} has a block whose opening line the runner does not read"
    assert found.count(_run_python) == _fences(text, "python"), unread
    assert found.count(_run_command) == _fences(text, "console"), unread
    assert found.count(_compare_output) == text.count('title="output"'), unread


def test_the_pages_paste_outputs_and_code_to_check():
    examples = [example for page in PAGES for example in SYBIL.parse(page)]
    commands = [e for e in examples if str(e.parsed).startswith("$ gradcheck ")]
    assert len(commands) >= 4
    assert sum(e.region.evaluator is _compare_output for e in examples) >= 2
    assert sum(e.region.evaluator is _run_python for e in examples) >= 10
    assert any(Path(e.path).name == "README.md" for e in commands)  # the README's one report
