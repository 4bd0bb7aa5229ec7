"""Fixtures: one real emulator HTTP server on 127.0.0.1 (kernel-chosen port) for the whole folder,
and gateway apps pointed at it, driven in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from examples.gateway import GatewayConfig, Timeouts, create_app, emulator_pools, load_catalog
from examples.gateway.catalog import Catalog
from examples.gateway.emulator import EmulatorServer


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


# One plain-HTTP control client for the whole run (a new httpx.Client per call would load the CA bundle each time).
CONTROL = httpx.Client(verify=False, timeout=5)


@pytest.fixture(scope="session", autouse=True)
def _close_control_client() -> Iterator[None]:
    yield
    CONTROL.close()


@pytest.fixture(autouse=True)
def _reset_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emulator" in request.fixturenames:
        CONTROL.delete(request.getfixturevalue("emulator").url + "/_control")


def emulator_requests(emulator: EmulatorServer, **match: str) -> int:
    """How many requests the emulator received, filtered by endpoint/api/model."""
    rows = CONTROL.get(emulator.url + "/_control").json()["requests"]
    return sum(r["count"] for r in rows if all(r[k] == v for k, v in match.items()))


def set_fault(emulator: EmulatorServer, fault: str, **rule: Any) -> None:
    r = CONTROL.post(emulator.url + "/_control", json={"fault": fault, **rule})
    r.raise_for_status()


FAST = Timeouts(connect=2.0, first_byte=0.25, read=2.0, total=0.25)


@pytest.fixture
def make_app(emulator: EmulatorServer, catalog: Catalog) -> Callable[..., Starlette]:
    """``make_app(endpoints=("a", "b"), **config)``: a gateway app whose pools all point at the emulator."""

    def make(endpoints: tuple[str, ...] = ("default",), wrap: Any = None, **config: Any) -> Starlette:
        config.setdefault("timeouts", FAST)
        pools = emulator_pools(emulator.url, catalog, endpoints=endpoints)
        return create_app(GatewayConfig(catalog=catalog, pools=pools, **config), wrap=wrap)

    return make


@pytest.fixture
async def client(make_app: Callable[..., Starlette]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as c:
        yield c
    await app.state.gateway.aclose()


def client_for(app: Starlette, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 12345)), base_url="http://gateway.test")
