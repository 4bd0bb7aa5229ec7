"""Layering (issue 9): the EVM code production needs lives in ``x402_middleware/evm/``; ``devchain/`` builds on it,
and nothing else in the package imports the dev chain (anvil, the test token, funded test keys)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import x402_middleware

PACKAGE = Path(x402_middleware.__file__).parent
DEVCHAIN = "x402_middleware.devchain"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path``; ``from a import b`` yields ``a`` and ``a.b``
    (``b`` may be a submodule), relative imports resolved against the file's package."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _is_devchain(name: str) -> bool:
    return name == DEVCHAIN or name.startswith(DEVCHAIN + ".")


def test_the_import_resolver_sees_relative_imports() -> None:
    # A check that finds nothing proves nothing: devchain's own modules do import devchain, relatively.
    seen = {name for _, name in imported_modules(PACKAGE / "devchain" / "chain.py")}
    assert "x402_middleware.devchain._rpc" in seen
    assert "x402_middleware.evm.abi" in seen
    init = {name for _, name in imported_modules(PACKAGE / "devchain" / "__init__.py")}
    assert "x402_middleware.devchain._anvil" in init


def test_nothing_outside_devchain_imports_devchain() -> None:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "devchain") not in p.parents]
    assert PACKAGE / "facilitator" / "onchain.py" in files
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path)
        if _is_devchain(name)
    ]
    assert offenders == []


@pytest.mark.parametrize("module", ["x402_middleware.facilitator.onchain", "x402_middleware.evm.transactions"])
def test_importing_production_evm_code_does_not_load_devchain(module: str) -> None:
    code = f"import {module}, sys; print('{DEVCHAIN}' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"
