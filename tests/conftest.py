from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (Debian's server) for the whole session, started on first use."""
    from tests._postgres import PostgresServer

    with PostgresServer() as server:
        yield server.url
