"""Run docs/notebook.ipynb and save it with its outputs (what the web shows).

    pip install -e ".[test]"   # nbclient, nbformat, ipykernel
    python docs/run_notebook.py

The test suite runs the same notebook (tests/test_notebook.py) and checks its outputs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).with_name("notebook.ipynb")


def kernel() -> KernelManager:
    """A kernel of this very Python (ipykernel's built-in spec), whatever other python3
    kernelspecs are installed."""
    return KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )


def main() -> int:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:  # hypothesis writes .hypothesis/ there
        NotebookClient(notebook, timeout=300, km=kernel()).execute(cwd=scratch)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
