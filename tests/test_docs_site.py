"""The docs build as a site with no warning: every page in the nav, every link and anchor
between pages resolving. Skipped where the `docs` extra (mkdocs, mkdocs-material) is not
installed; the `test` extra installs it, so CI builds the site."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_build_with_mkdocs_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"  # outside the repository: the build leaves the tree as it was
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "index.html").exists()
    assert (site / "architecture" / "index.html").exists()


def test_every_page_the_readme_links_to_exists():
    """mkdocs checks the links between pages; the README sits outside docs/, so here."""
    readme = (ROOT / "README.md").read_text()
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)#:]+(?:#[^)]*)?)\)", readme)}
    assert targets, "the README links to no page"
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, f"README.md links to pages that do not exist: {missing}"
