"""Import cost (issue 9): the ASGI middleware imports the ASGI path, not the whole package.

``x402_middleware/__init__.py`` imports its public names on first use (PEP 562) and so does
``x402_middleware.facilitator``: an app that uses only ``PaymentMiddleware`` does not load httpx (the paying
client, the HTTP facilitator and the transport need it), Django, eth-account or the WSGI shell. Each check runs
in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("httpx", "httpcore", "django", "eth_account", "eth_abi", "starlette")
PROBE = (
    "import json, sys; {stmt}; "
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith('x402_middleware'))))"
)


def _imported(stmt: str) -> list[str]:
    code = PROBE.format(stmt=stmt, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules: list[str] = json.loads(out.stdout)
    return modules


@pytest.mark.parametrize("stmt", ["from x402_middleware import PaymentMiddleware", "import x402_middleware.asgi"])
def test_the_asgi_middleware_imports_neither_httpx_nor_django(stmt: str) -> None:
    modules = _imported(stmt)
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []
    ours = {m for m in modules if m.startswith("x402_middleware")}
    assert "x402_middleware.asgi" in ours
    unwanted = {
        "x402_middleware.client",
        "x402_middleware.transport",
        "x402_middleware.wsgi",
        "x402_middleware._http1",
        "x402_middleware.django",
        "x402_middleware.devchain",
        "x402_middleware.facilitator.remote",
        "x402_middleware.facilitator._http",
        "x402_middleware.facilitator.onchain",
        "x402_middleware.facilitator.server",
    }
    assert ours & unwanted == set()


def test_importing_the_package_imports_only_the_exceptions() -> None:
    assert _imported("import x402_middleware") == ["x402_middleware", "x402_middleware._exceptions"]


def test_each_public_name_loads_its_own_module() -> None:
    wsgi = _imported("from x402_middleware import PaymentWSGIMiddleware")
    assert "x402_middleware.wsgi" in wsgi and "x402_middleware.asgi" not in wsgi
    client = _imported("from x402_middleware import X402Auth")
    assert "httpx" in client and "x402_middleware.asgi" not in client
    facilitator = _imported("from x402_middleware import HTTPFacilitator")
    assert "x402_middleware.facilitator.remote" in facilitator
