"""pytest plugin: every module-level ``Derivation`` in a test module becomes a test item,
and so does each one in a module-level list or dict (not an _underscored one). A Derivation
is collected only in the module that defines it, not where it is imported.

Registered through the ``pytest11`` entry point. Importing it is cheap: it never imports
torch or the engine itself; they load when the first derivation item runs. A correct
derivation is a pass, a wrong one a failure whose text is the gradcheck report, and a
problem in the declaration (a forward that is no torch spec) an error.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gradcheck.derivation import Derivation


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient verification (gradcheck)")
    group.addoption(
        "--gradcheck-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="examples per derivation (default: the hypothesis profile's max_examples)",
    )
    group.addoption(
        "--gradcheck-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of every search (default: random; 0 under a derandomized profile)",
    )
    group.addoption(
        "--gradcheck-dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype the hand backwards receive (the references stay float64)",
    )
    group.addoption(
        "--gradcheck-deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time limit of one call of a forward or backward; a call past it fails the "
        "derivation with a timeout (default: 60; 0: no limit)",
    )
    group.addoption(
        "--gradcheck-no-collect",
        action="store_true",
        default=False,
        help="do not turn module-level Derivations into test items",
    )


def pytest_pycollect_makemodule(module_path: Any, parent: pytest.Collector) -> pytest.Module | None:
    """Test modules that use gradcheck are collected by ``_GuardedModule``: a declaration
    error raised while importing one fails that file alone, in one line (a plain import
    error prints gradcheck's frames and interrupts the whole session). Other modules are
    left to pytest."""
    try:
        with open(module_path, encoding="utf-8", errors="replace") as source:
            if "gradcheck" not in source.read():
                return None
    except OSError:
        return None
    module: pytest.Module = _GuardedModule.from_parent(parent, path=module_path)
    return module


class _GuardedModule(pytest.Module):
    def collect(self) -> Any:
        try:
            return super().collect()
        except Exception as exc:
            if not _is_declaration_error(exc):
                raise
            return [_DeclarationError.from_parent(self, name="declaration", message=str(exc))]


def _is_declaration_error(exc: BaseException) -> bool:
    module = sys.modules.get("gradcheck.derivation")
    return module is not None and isinstance(exc, module.DerivationError)


class _DeclarationError(pytest.Item):
    """Stands for a test module whose import raised a DerivationError: fails with it."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = " ".join(message.split())

    def runtest(self) -> None:
        pytest.fail(f"declaration error: {self.message}", pytrace=False)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, "gradcheck: declaration"


def _derivation_type() -> type | None:
    # A Derivation can only exist once its module is loaded: no import needed to test for it.
    module = sys.modules.get("gradcheck.derivation")
    return None if module is None else module.Derivation


def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> list[pytest.Item] | None:
    derivation_type = _derivation_type()
    if derivation_type is None or collector.config.getoption("gradcheck_no_collect"):
        return None
    if isinstance(obj, derivation_type):
        held = [(name, obj)]
    elif isinstance(obj, list | dict) and not name.startswith("_"):
        # A module-level list or dict of them; an _underscored one (a list of must-fail
        # mutants fed to parametrize, say) stays data.
        values = obj.items() if isinstance(obj, dict) else enumerate(obj)
        held = [(f"{name}[{key!r}]", v) for key, v in values if isinstance(v, derivation_type)]
        if not held:
            return None
    else:
        return None
    if not _defined_here(collector, name):
        return None  # imported from another module: collected where it is defined
    seen: dict[str, str] = collector.stash.setdefault(_NAMES, {})
    items: list[pytest.Item] = []
    for attribute, derivation in held:
        earlier = seen.setdefault(derivation.name, attribute)  # type: ignore[attr-defined]
        if earlier != attribute:
            raise collector.CollectError(
                f"two Derivations are named {derivation.name!r}: {earlier} and {attribute}; "  # type: ignore[attr-defined]
                "give each its own name= so that their test ids differ"
            )
        items.append(
            DerivationItem.from_parent(
                collector,
                name=derivation.name,  # type: ignore[attr-defined]
                derivation=derivation,
                attribute=attribute,
            )
        )
    return items


_NAMES = pytest.StashKey[dict[str, str]]()


def _defined_here(collector: pytest.Collector, name: str) -> bool:
    """Whether the module binds ``name`` itself rather than importing it: a Derivation
    imported into a test module (to assert on it, say) is collected only where it lives."""
    module = getattr(collector, "obj", None)
    path = getattr(module, "__file__", None)
    if path is None:
        return True
    imported = _imported_names(path)
    return name not in imported


def _imported_names(path: str) -> frozenset[str]:
    import ast

    try:
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.col_offset == 0:
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return frozenset(names)


class DerivationItem(pytest.Item):
    """One derivation, verified by a hypothesis search when the item runs."""

    def __init__(self, *, derivation: Derivation, attribute: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.derivation = derivation
        self.attribute = attribute
        self._slow_text: str | None = None  # a slow-search warning to give after the run
        self.add_marker(pytest.mark.gradcheck)

    def setup(self) -> None:
        # A declaration problem (a forward that returns no tensor, a backward signature
        # the inputs cannot fill) shows at the first point: raise it here, as an error.
        from gradcheck.checking import check
        from gradcheck.derivation import DerivationError
        from gradcheck.strategies import seeded_inputs, smallest_params_and_dims

        try:
            params, sizes = smallest_params_and_dims(self.derivation)
            point = seeded_inputs(self.derivation, sizes, 0, params)
            check(self.derivation, {**point, **params}, deadline=self._deadline())
            return
        except DerivationError as exc:
            message = str(exc)
        # Outside the except block: the one-line message alone, as the command prints it,
        # not pytest's and pluggy's frames (and no chained exception).
        pytest.fail(message, pytrace=False)

    def _deadline(self) -> float | None:
        from gradcheck.guard import DEFAULT_DEADLINE

        given = self.config.getoption("gradcheck_deadline")
        return DEFAULT_DEADLINE if given is None else (given or None)

    def _reproduce(self, seed: int | None) -> str:
        """The command that reruns this item's search, with the options that shaped it."""
        config = self.config
        # Quoted for a shell: a derivation named "my layer" makes a node id with a space.
        parts = [f"pytest {shlex.quote(self.nodeid)}", f"--gradcheck-seed {seed}"]
        for option, flag in (
            ("gradcheck_max_examples", "--gradcheck-max-examples"),
            ("gradcheck_deadline", "--gradcheck-deadline"),
        ):
            value = config.getoption(option)
            if value is not None:
                parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
        if config.getoption("gradcheck_dtype") != "float64":
            parts.append(f"--gradcheck-dtype {config.getoption('gradcheck_dtype')}")
        return " ".join(parts)

    def _slow(self, took: float) -> None:
        from gradcheck.runner import slow_search_warning

        examples = self.config.getoption("gradcheck_max_examples")
        if examples is None:
            from hypothesis import settings

            examples = settings().max_examples
        text = slow_search_warning(
            self.derivation.name, took, examples, option="--gradcheck-max-examples"
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # now, while the user waits
            reporter.write_line("")
            reporter.write_line(text)
        else:  # an xdist worker has no terminal: the warnings summary carries it
            self._slow_text = text

    def runtest(self) -> None:
        from gradcheck.runner import SlowWatch
        from gradcheck.search import verify
        from gradcheck.testing import GradcheckFailure

        config = self.config
        self._slow_text = None
        report = verify(
            self.derivation,
            max_examples=config.getoption("gradcheck_max_examples"),
            seed=config.getoption("gradcheck_seed"),
            dtype=config.getoption("gradcheck_dtype"),
            deadline=self._deadline(),
            progress=SlowWatch(self._slow),
        )
        if self._slow_text is not None:
            warnings.warn(pytest.PytestWarning(self._slow_text), stacklevel=1)
        self.user_properties.append(("gradcheck_seed", report.seed))
        internal = [p for p in report.problems if p.kind == "internal"]
        if internal:
            # gradcheck's own bug, not the derivation's: one line, and the command to rerun
            message = f"{internal[0].message} Rerun: {self._reproduce(report.seed)}"
            pytest.fail(message, pytrace=False)
        if not report.ok:
            raise GradcheckFailure(replace(report, reproduce=self._reproduce(report.seed)))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        from gradcheck.derivation import DerivationError
        from gradcheck.testing import GradcheckFailure

        if isinstance(excinfo.value, GradcheckFailure | DerivationError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"gradcheck: {self.derivation.name} ({self.attribute})"


def pytest_configure(config: pytest.Config) -> None:
    examples = config.getoption("gradcheck_max_examples", None)
    if examples is not None and examples < 1:
        raise pytest.UsageError(f"--gradcheck-max-examples={examples}: give at least 1.")
    deadline = config.getoption("gradcheck_deadline", None)
    if deadline is not None and not deadline >= 0:
        raise pytest.UsageError(
            f"--gradcheck-deadline={deadline}: give seconds >= 0 (0: no limit)."
        )
    seed = config.getoption("gradcheck_seed", None)
    if seed is not None and seed < 0:
        raise pytest.UsageError(f"--gradcheck-seed={seed}: give a seed >= 0.")
    config.addinivalue_line(
        "markers", "gradcheck: a Derivation collected and verified by the gradcheck plugin"
    )
