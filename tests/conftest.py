"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE: fast by default, `ci`, `thorough`."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# -- which of the engine's fast paths the run took (gradcheck/paths.py) ----------------------
# Each process counts its own; xdist workers hand theirs to the controller, which adds them
# up and prints one line at the end, so a run says which paths its verdicts went through.

_PATHS_KEY = "gradcheck_paths"
_FROM_WORKERS: dict[str, int] = {}


def pytest_sessionfinish(session):
    from gradcheck.paths import TAKEN

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_PATHS_KEY] = dict(TAKEN)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent without xdist
def pytest_testnodedown(node, error):
    for path, count in getattr(node, "workeroutput", {}).get(_PATHS_KEY, {}).items():
        _FROM_WORKERS[path] = _FROM_WORKERS.get(path, 0) + count


def pytest_terminal_summary(terminalreporter):
    from gradcheck.paths import PATHS, TAKEN

    counts = {path: TAKEN.get(path, 0) + _FROM_WORKERS.get(path, 0) for path in PATHS}
    taken = ", ".join(f"{path} {count}" for path, count in counts.items() if count)
    missed = [path for path, count in counts.items() if not count]
    terminalreporter.write_line(
        f"gradcheck paths taken: {taken}" + (f"; never: {', '.join(missed)}" if missed else "")
    )
