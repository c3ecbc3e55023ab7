"""pytest plugin: every module-level ``Derivation`` in a test module becomes a test item.

Registered through the ``pytest11`` entry point. Importing it is cheap: it never imports
torch or the engine itself; they load when the first derivation item runs. A correct
derivation is a pass, a wrong one a failure whose text is the gradcheck report, and a
problem in the declaration (a forward that is no torch spec) an error.
"""

from __future__ import annotations

import sys
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
        "--gradcheck-no-collect",
        action="store_true",
        default=False,
        help="do not turn module-level Derivations into test items",
    )


def _derivation_type() -> type | None:
    # A Derivation can only exist once its module is loaded: no import needed to test for it.
    module = sys.modules.get("gradcheck.derivation")
    return None if module is None else module.Derivation


def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> pytest.Item | None:
    derivation_type = _derivation_type()
    if derivation_type is None or not isinstance(obj, derivation_type):
        return None
    if collector.config.getoption("gradcheck_no_collect"):
        return None
    derivation: Derivation = obj  # type: ignore[assignment]  # isinstance-checked above
    return DerivationItem.from_parent(
        collector, name=derivation.name, derivation=derivation, attribute=name
    )


class DerivationItem(pytest.Item):
    """One derivation, verified by a hypothesis search when the item runs."""

    def __init__(self, *, derivation: Derivation, attribute: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.derivation = derivation
        self.attribute = attribute
        self.add_marker(pytest.mark.gradcheck)

    def setup(self) -> None:
        # A declaration problem (a forward that returns no tensor, a backward signature
        # the inputs cannot fill) shows at the first point: raise it here, as an error.
        from gradcheck.checking import check
        from gradcheck.strategies import seeded_inputs, smallest_params_and_dims

        params, sizes = smallest_params_and_dims(self.derivation)
        point = seeded_inputs(self.derivation, sizes, 0, params)
        check(self.derivation, {**point, **params})

    def runtest(self) -> None:
        from gradcheck.search import verify
        from gradcheck.testing import GradcheckFailure

        config = self.config
        report = verify(
            self.derivation,
            max_examples=config.getoption("gradcheck_max_examples"),
            seed=config.getoption("gradcheck_seed"),
            dtype=config.getoption("gradcheck_dtype"),
        )
        self.user_properties.append(("gradcheck_seed", report.seed))
        if not report.ok:
            command = f"pytest {self.nodeid} --gradcheck-seed {report.seed}"
            raise GradcheckFailure(replace(report, reproduce=command))

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
    seed = config.getoption("gradcheck_seed", None)
    if seed is not None and seed < 0:
        raise pytest.UsageError(f"--gradcheck-seed={seed}: give a seed >= 0.")
    config.addinivalue_line(
        "markers", "gradcheck: a Derivation collected and verified by the gradcheck plugin"
    )
