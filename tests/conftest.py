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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server (Debian's) for the whole session, started on first use."""
    from tests._redis import RedisServer

    with RedisServer() as server:
        yield server.url
