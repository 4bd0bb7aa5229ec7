"""The examples in the package's docstrings run with the suite, so they stay true (issue 9: doctests in CI).

Every module of ``x402_middleware`` whose source holds a ``>>>`` example is imported and its docstrings run
with :mod:`doctest`'s default options, as ``python -m doctest`` would (use ``# doctest: +ELLIPSIS`` where a
value varies). Left out: ``x402_middleware/django/`` (importing its modules needs configured Django
settings) and ``__main__`` entry points. An example that truly needs a network or a chain is marked
``# doctest: +SKIP``; prefer one that runs offline.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import x402_middleware

PACKAGE = Path(x402_middleware.__file__).parent
EXCLUDED = ("django",)


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in EXCLUDED or parts[-1] == "__main__" or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("x402_middleware", *parts)))
    return names


MODULES = _modules_with_examples()


def test_the_package_has_doctests() -> None:
    # Guards the walk itself: a wrong path would silently collect nothing and pass.
    assert {"x402_middleware.money", "x402_middleware.stores", "x402_middleware.wire"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} has '>>>' in its source but no docstring example doctest can find"
    runner = doctest.DocTestRunner()
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
        test.globs.clear()
    assert runner.failures == 0, "".join(report)
