from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._redis import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url
