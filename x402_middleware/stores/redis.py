"""A payment store shared by several replicas, on Redis (``pip install "x402_middleware[redis]"``).

Each payment is one string key (``prefix`` + the scheme's payment key) holding ``state|detail`` with a
millisecond TTL. Both operations are one round trip each and atomic on the server:

* ``reserve``: a Lua script ``SET key pending| NX PX ttl``, else ``GET key`` (the current record);
* ``swap``: a Lua compare-and-set, ``GET key == expected`` then ``SET ... PX ttl`` or ``DEL``.

Under load the asyncio side pipelines: the scripts called by concurrent requests during one event-loop
turn go to Redis as one pipeline (one write, one read, each still atomic on the server), so a busy
replica pays ~18 µs of client CPU per operation instead of ~65 µs; a lone call goes out alone, at once
(``benchmarks/README.md``, "RedisStore pipelining").

Fail closed: when Redis cannot be reached or does not answer within the timeout, every operation raises
:class:`~x402_middleware.StoreUnavailableError`; the middleware then answers 503 ``store_unavailable`` and
runs nothing. Records live in Redis memory: run it with persistence (``appendonly yes``) if a restart must
not forget which payments were already used.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .._exceptions import ConfigurationError, StoreUnavailableError
from . import CLAIMED, PaymentRecord

try:
    import redis
    import redis.asyncio
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('RedisStore needs the redis client: pip install "x402_middleware[redis]"') from exc

# SET NX, else the current value: one round trip, atomic (a script runs alone on the server).
_RESERVE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""
# Compare-and-set; an empty new value forgets the key (an encoded record is never empty).
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


def _encode(record: PaymentRecord | None) -> str:
    return "" if record is None else f"{record.state}|{record.detail}"


def _decode(value: bytes | str) -> PaymentRecord:
    text = value.decode() if isinstance(value, bytes) else value
    state, _, detail = text.partition("|")
    return PaymentRecord(state, detail)


def _ms(ttl: float) -> int:
    return max(int(ttl * 1000), 1000)  # at least 1 s, as InMemoryStore keeps a record


class _Pipeliner:
    """Sends the script calls made during one event-loop turn as one pipeline (one per loop, per store)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.pending: list[tuple[Any, list[str], list[str | int], asyncio.Future[Any]]] = []
        self.sending = 0  # calls and pipelines on the wire

    async def run(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        """The script's answer; a call made while nothing else is queued or on the wire goes out alone, at once."""
        if self.pending or self.sending:
            return await self.call(script, keys, args)
        self.sending += 1
        try:
            return await script(keys=keys, args=args)
        finally:
            self.sending -= 1

    def call(self, script: Any, keys: list[str], args: list[str | int]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((script, keys, args, future))
        if len(self.pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        task = asyncio.ensure_future(self._send(batch))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    async def _send(self, batch: list[tuple[Any, list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        self.sending += 1
        try:
            await self._send_batch(batch)
        finally:
            self.sending -= 1

    async def _send_batch(self, batch: list[tuple[Any, list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:  # nothing to share a round trip with: the plain call (loads the script if needed)
            script, keys, args, future = batch[0]
            try:
                _settle(future, await script(keys=keys, args=args))
            except RedisError as exc:
                _settle(future, exc)
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            for *_, future in batch:
                _settle(future, exc)
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # a Redis that restarted: load it again, once per call
                try:
                    result = await script(keys=keys, args=args)
                except RedisError as exc:
                    result = exc
            _settle(future, result)


_TASKS: set[asyncio.Task[None]] = set()  # pipelines in flight (the loop only keeps weak references)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the request awaiting it was cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class RedisStore:
    """A :class:`~x402_middleware.PaymentStore` and :class:`~x402_middleware.SyncPaymentStore` on Redis, for
    several processes or hosts serving the same paid routes (a payment is claimed once across all of them).

    ``from_url`` uses short timeouts (1 s to connect, 1 s per command, one immediate retry on a dropped
    connection), so an unreachable Redis turns into a quick 503 rather than hanging requests::

        store = RedisStore.from_url("redis://127.0.0.1:6379/0", prefix="x402:")
        app = PaymentMiddleware(app, routes=..., facilitator=..., store=store)

    Or pass your own clients (``redis.Redis`` for WSGI/sync Django, ``redis.asyncio.Redis`` for ASGI).
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        *,
        prefix: str = "x402:",
    ) -> None:
        if client is None and async_client is None:
            raise ConfigurationError("RedisStore needs a client: RedisStore.from_url(url) or RedisStore(client=...)")
        self.prefix = prefix
        self._client, self._async_client = client, async_client
        self._reserve = client.register_script(_RESERVE) if client is not None else None
        self._swap = client.register_script(_SWAP) if client is not None else None
        self._areserve = async_client.register_script(_RESERVE) if async_client is not None else None
        self._aswap = async_client.register_script(_SWAP) if async_client is not None else None
        self._pipeliners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pipeliner] = weakref.WeakKeyDictionary()

    def _pipeliner(self) -> _Pipeliner:
        loop = asyncio.get_running_loop()
        found = self._pipeliners.get(loop)
        if found is None:
            assert self._async_client is not None
            found = self._pipeliners[loop] = _Pipeliner(self._async_client)
        return found

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "x402:", connect_timeout: float = 1.0, timeout: float = 1.0
    ) -> RedisStore:
        """A store with a blocking and an asyncio client to ``url`` (they connect on first use)."""
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": timeout,
            "retry": Retry(NoBackoff(), 1),
        }
        async_options = {**options, "retry": redis.asyncio.retry.Retry(NoBackoff(), 1)}
        return cls(
            redis.Redis.from_url(url, **options), redis.asyncio.Redis.from_url(url, **async_options), prefix=prefix
        )

    def _unavailable(self, exc: RedisError) -> StoreUnavailableError:
        return StoreUnavailableError(f"the Redis payment store did not answer ({type(exc).__name__}: {exc})")

    def reserve_sync(self, key: str, ttl: float) -> PaymentRecord | None:
        if self._reserve is None:
            raise ConfigurationError("this RedisStore has no blocking client: pass client=redis.Redis(...)")
        try:
            current = self._reserve(keys=[self.prefix + key], args=[_encode(CLAIMED), _ms(ttl)])
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if current is None else _decode(current)

    def swap_sync(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        if self._swap is None:
            raise ConfigurationError("this RedisStore has no blocking client: pass client=redis.Redis(...)")
        try:
            return bool(self._swap(keys=[self.prefix + key], args=[_encode(expected), _encode(new), _ms(ttl)]))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    async def reserve(self, key: str, ttl: float) -> PaymentRecord | None:
        if self._areserve is None:
            raise ConfigurationError("this RedisStore has no asyncio client: pass async_client=redis.asyncio.Redis()")
        try:
            current = await self._pipeliner().run(self._areserve, [self.prefix + key], [_encode(CLAIMED), _ms(ttl)])
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if current is None else _decode(current)

    async def swap(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        if self._aswap is None:
            raise ConfigurationError("this RedisStore has no asyncio client: pass async_client=redis.asyncio.Redis()")
        try:
            args: list[str | int] = [_encode(expected), _encode(new), _ms(ttl)]
            return bool(await self._pipeliner().run(self._aswap, [self.prefix + key], args))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def get(self, key: str) -> PaymentRecord | None:
        """The current record of ``key`` (for tests and diagnostics; blocking client)."""
        if self._client is None:
            raise ConfigurationError("this RedisStore has no blocking client: pass client=redis.Redis(...)")
        try:
            value = self._client.get(self.prefix + key)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if value is None else _decode(value)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
