"""The public API (issue 9), in the manner of httpx's ``tests/test_exported_members.py``.

``x402_middleware.__all__`` lists the public names; ``__init__`` imports most of them on first use (PEP 562), so
the lazy map, the ``TYPE_CHECKING`` imports (what mypy and IDEs read) and ``__all__`` must stay in step. Every
public submodule's ``__all__`` names only what it has, and the examples use only public names.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import x402_middleware
from x402_middleware import _exceptions

PACKAGE = Path(x402_middleware.__file__).parent
EXAMPLES = PACKAGE.parent / "examples"
# Names __init__ defines for itself, not exports.
_INIT_HELPERS = {"TYPE_CHECKING", "Any", "annotations"}


def _init_imports() -> tuple[dict[str, str], dict[str, str]]:
    """(eager, type-checking-only) imports of ``__init__.py``: name -> relative module."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text("utf-8"))
    eager: dict[str, str] = {}
    typing_only: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            eager.update({a.asname or a.name: "." + (node.module or "") for a in node.names})
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for inner in node.body:
                assert isinstance(inner, ast.ImportFrom) and inner.level == 1, ast.dump(inner)
                typing_only.update({a.asname or a.name: "." + (inner.module or "") for a in inner.names})
    return eager, typing_only


def _public_submodules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.walk_packages(x402_middleware.__path__, "x402_middleware."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules.append(importlib.import_module(info.name))
    return modules


def _defined_here(module: ModuleType) -> list[str]:
    """Public classes and functions ``module`` defines itself (not the ones it imports)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    )


def test_all_is_sorted_and_unique() -> None:
    assert x402_middleware.__all__ == sorted(set(x402_middleware.__all__))


def test_every_name_in_all_is_importable() -> None:
    for name in x402_middleware.__all__:
        assert getattr(x402_middleware, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from x402_middleware import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == set(x402_middleware.__all__)
    assert set(x402_middleware.__all__) <= set(dir(x402_middleware))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'PaymentMiddlewar'"):
        x402_middleware.PaymentMiddlewar  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        exec("from x402_middleware import _LAZY_TYPO", {})  # noqa: S102


def test_lazy_map_type_checking_imports_and_all_agree() -> None:
    eager, typing_only = _init_imports()
    lazy: dict[str, str] = vars(x402_middleware)["_LAZY"]
    assert typing_only == lazy, "the TYPE_CHECKING imports and _LAZY name different things"
    assert not set(eager) & set(lazy)
    assert set(eager) | set(lazy) | {"__version__"} == set(x402_middleware.__all__)
    for name, module in lazy.items():
        assert getattr(importlib.import_module(module, "x402_middleware"), name) is getattr(x402_middleware, name)


def test_nothing_public_is_missing_from_all() -> None:
    for name in x402_middleware.__all__:
        getattr(x402_middleware, name)  # load every lazy name, so that vars() holds them all
    public = {
        name
        for name, value in vars(x402_middleware).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name not in _INIT_HELPERS
    }
    assert public <= set(x402_middleware.__all__), public - set(x402_middleware.__all__)
    # The whole exception tree is public (its docstring is the map of it).
    errors = {name for name in _defined_here(_exceptions) if issubclass(getattr(_exceptions, name), Exception)}
    assert errors <= set(x402_middleware.__all__), errors - set(x402_middleware.__all__)


def test_every_public_submodule_all_is_consistent() -> None:
    modules = _public_submodules()
    assert {"x402_middleware.asgi", "x402_middleware.wire", "x402_middleware.facilitator"} <= {
        m.__name__ for m in modules
    }
    for module in modules:
        names = getattr(module, "__all__", None)
        if names is None:
            continue
        assert len(names) == len(set(names)), f"{module.__name__}.__all__ repeats a name"
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ names what it does not define: {missing}"
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        assert not private, f"{module.__name__}.__all__ exports private names: {private}"


def test_package_exports_come_from_their_modules_public_api() -> None:
    lazy: dict[str, str] = vars(x402_middleware)["_LAZY"]
    for name, relative in lazy.items():
        module = importlib.import_module(relative, "x402_middleware")
        if not relative.lstrip(".").startswith("_") and hasattr(module, "__all__"):
            assert name in module.__all__, f"{name} is exported by x402_middleware but not by {module.__name__}"


def _private_imports(path: Path) -> list[str]:
    """``line: name`` for every import of a private x402_middleware module or name in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "x402_middleware" and any(p.startswith("_") and not p.startswith("__") for p in parts):
                found.append(f"{path.relative_to(EXAMPLES.parent)}:{node.lineno}: {target}")
    return found


def test_examples_use_only_public_names() -> None:
    # The examples are what users copy: what they need from the library has a public name
    # (x402_middleware.wire holds the header codec and the depth-limited JSON parser).
    files = sorted(EXAMPLES.rglob("*.py"))
    assert EXAMPLES / "gateway" / "app.py" in files
    assert not [hit for path in files for hit in _private_imports(path)]


def test_the_charge_api_is_public() -> None:
    # Pay for what you use (upto): the app reports the actual charge on its request.
    from x402_middleware import usage

    assert x402_middleware.charge is usage.charge
    assert x402_middleware.Served is usage.Served
    assert {"charge", "Served", "UPTO", "USAGE_KEY"} <= set(usage.__all__)
