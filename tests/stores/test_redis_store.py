"""RedisStore against a real redis-server: the store protocol's atomicity, sync and async, and failing closed."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests._redis import free_port
from x402_middleware import StoreUnavailableError
from x402_middleware.stores import BURNED, CLAIMED, SETTLED, SETTLING, PaymentRecord
from x402_middleware.stores.redis import RedisStore


@pytest.fixture
def store(redis_url: str) -> RedisStore:
    return RedisStore.from_url(redis_url, prefix=f"t-{uuid.uuid4().hex}:")


def test_fifty_concurrent_claims_of_one_key_claim_it_once(store: RedisStore) -> None:
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: store.reserve_sync("k", 60), range(50)))
    assert results.count(None) == 1 and set(results) == {None, CLAIMED}


@pytest.mark.anyio
async def test_fifty_concurrent_async_claims_of_one_key_claim_it_once(store: RedisStore) -> None:
    try:
        results = await asyncio.gather(*(store.reserve("k", 60) for _ in range(50)))
    finally:
        await store.aclose()
    assert results.count(None) == 1 and set(results) == {None, CLAIMED}


def test_swap_is_a_compare_and_set_and_keeps_final_states(store: RedisStore) -> None:
    assert store.swap_sync("k", CLAIMED, PaymentRecord(SETTLED, "0xabc"), 60) is False  # nothing to swap
    assert store.reserve_sync("k", 60) is None
    assert store.swap_sync("k", PaymentRecord(SETTLING), PaymentRecord(SETTLED, "0xabc"), 60) is False
    assert store.swap_sync("k", CLAIMED, PaymentRecord(SETTLED, "0xabc"), 60) is True
    assert store.reserve_sync("k", 60) == PaymentRecord(SETTLED, "0xabc") == store.get("k")
    assert store.swap_sync("k", CLAIMED, None, 60) is False  # settled stays settled
    assert store.reserve_sync("b", 60) is None
    assert store.swap_sync("b", CLAIMED, PaymentRecord(BURNED, "invalid_exact_evm_insufficient_balance"), 60)
    assert store.reserve_sync("b", 60) == PaymentRecord(BURNED, "invalid_exact_evm_insufficient_balance")
    assert store.reserve_sync("r", 60) is None and store.swap_sync("r", CLAIMED, None, 60) is True
    assert store.get("r") is None and store.reserve_sync("r", 60) is None  # released: claimable again


@pytest.mark.anyio
async def test_async_swap_and_detail_with_separators(store: RedisStore) -> None:
    try:
        assert await store.reserve("k", 60) is None
        record = PaymentRecord(SETTLING, "0xabc|odd")
        assert await store.swap("k", CLAIMED, record, 60) is True
        assert await store.reserve("k", 60) == record
        assert await store.swap("k", CLAIMED, None, 60) is False
        assert await store.swap("k", record, None, 60) is True and await store.reserve("k", 60) is None
    finally:
        await store.aclose()


def test_records_expire_after_their_ttl(store: RedisStore, redis_url: str) -> None:
    assert store.reserve_sync("long", 3600) is None
    ttl_ms = redis.Redis.from_url(redis_url).pttl(store.prefix + "long")
    assert 3_590_000 < ttl_ms <= 3_600_000  # the TTL the flow asks for, in milliseconds
    assert store.reserve_sync("k", 1) is None
    assert store.swap_sync("k", CLAIMED, PaymentRecord(SETTLED, "0x1"), 1) is True
    time.sleep(1.2)
    assert store.get("k") is None and store.reserve_sync("k", 60) is None


@pytest.mark.anyio
async def test_an_unreachable_redis_raises_store_unavailable_quickly() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        store.reserve_sync("k", 60)
    with pytest.raises(StoreUnavailableError):
        store.swap_sync("k", CLAIMED, None, 60)
    with pytest.raises(StoreUnavailableError):
        await store.reserve("k", 60)
    with pytest.raises(StoreUnavailableError):
        await store.swap("k", CLAIMED, None, 60)
    assert time.monotonic() - started < 2
    await store.aclose()


def test_a_redis_that_never_answers_times_out_into_store_unavailable() -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = RedisStore.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="Timeout"):
            store.reserve_sync("k", 60)
        assert time.monotonic() - started < 2
        store.close()
