"""What the command's tests with worker processes share: target-file code that makes a worker
verify some derivations whatever the machine's load, and the command run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each process that imports the target leaves its pid in imported_by/. With WAIT_FOR_WORKER
# set, ``wait_for_a_worker()`` (called by the first backward, in the command's own process)
# returns once a second process has imported the file; by then that worker has taken the
# last derivation, as workers take them from the back.
WAITS_FOR_A_WORKER = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    MARKS = Path(__file__).parent / "imported_by"
    MARKS.mkdir(exist_ok=True)
    (MARKS / str(os.getpid())).touch()

    def wait_for_a_worker():
        if os.environ.get("WAIT_FOR_WORKER"):
            for _ in range(600):
                if len(list(MARKS.iterdir())) >= 2:
                    break
                time.sleep(0.1)
    """
)


def importers(folder: Path) -> int:
    """How many processes imported the target in ``folder``; forgets them."""
    marks = list((folder / "imported_by").iterdir())
    for mark in marks:
        mark.unlink()
    return len(marks)


def gradcheck_verify(*argv: str, wait_for_worker: bool) -> subprocess.CompletedProcess[str]:
    """``python -m gradcheck verify ARGV`` in a fresh process, its output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    if wait_for_worker:
        env["WAIT_FOR_WORKER"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", "verify", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
