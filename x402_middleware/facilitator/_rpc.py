"""Async Ethereum JSON-RPC over kept-alive HTTP connections, batching concurrent calls.

The request building and answer parsing are the pure functions of
:mod:`x402_middleware.evm.jsonrpc`; this is only the async shell.

Calls made in the same event-loop turn go out as one JSON-RPC batch (an array of requests, JSON-RPC 2.0
§6): under load a facilitator settling many payments at once then pays one HTTP round trip and one
httpx request's CPU for many calls instead of one each. A lone call is sent as a plain request. A node
that does not answer batches with an array gets single requests from then on.

The transport is :mod:`._http`'s keep-alive client (``httpx`` costs ~1.4–5 ms of CPU per request under
load, encode/httpx#3215), or an injected ``httpx.AsyncClient``, or one made here when an
``HTTP(S)_PROXY`` applies to the node's URL. Only reads are re-sent after a dropped keep-alive
connection, never ``eth_sendRawTransaction``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from .. import _json
from .._exceptions import FacilitatorError
from ..evm.jsonrpc import RPCError, build_request, parse_response
from ._http import TRANSPORT_ERRORS, JSONClient, json_client, send_json

__all__ = ["SIMULATION_BLOCK", "AsyncRPC", "RPCError"]

# Simulations run against the block the transaction would be mined in: its timestamp is what validAfter and
# the deadlines are checked against on chain. "latest" carries the last block's timestamp, which trails the wall
# clock by the block interval, and on an idle chain (a dev node mining on demand) by minutes, failing a payment
# valid for a minute (x402 1.0 signs validAfter = now - 60) with "authorization is not yet valid".
SIMULATION_BLOCK = "pending"

_Call = tuple[str, tuple[Any, ...], "asyncio.Future[Any]"]

# Calls that only read chain state: safe to send again when a kept-alive connection turned out dropped.
_READS = frozenset(
    {
        "eth_call",
        "eth_chainId",
        "eth_gasPrice",
        "eth_estimateGas",
        "eth_blockNumber",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "net_version",
        "web3_clientVersion",
    }
)


def _idempotent(method: str) -> bool:
    return method in _READS or method.startswith("eth_get")  # eth_getTransactionReceipt, eth_getCode, ...


class AsyncRPC:
    """``await rpc("eth_chainId")`` -> the ``result``; raises :class:`RPCError` for JSON-RPC errors
    (``revert_reason`` set for contract reverts) and :class:`FacilitatorError` when the node is unreachable.

    ``max_batch`` caps the calls per batch (many public RPC providers refuse more than 100); 1 turns
    batching off. ``client`` (an ``httpx.AsyncClient``) replaces the built-in keep-alive transport.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        max_batch: int = 100,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self._owns_client = client is None
        self._client: JSONClient = json_client(url, client, timeout=timeout, max_connections=max_connections)
        self._ids = itertools.count(1)
        self.max_batch = max_batch
        self._queue: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each batch is answered

    async def __call__(self, method: str, *params: Any) -> Any:
        if self.max_batch <= 1:
            return await self._single(method, params)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:  # the first call of this turn schedules the flush that sends them all
            loop.call_soon(self._flush)
        self._queue.append((method, params, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), self.max_batch):
            task = asyncio.get_running_loop().create_task(self._dispatch(queue[start : start + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, calls: list[_Call]) -> None:
        if len(calls) == 1 or self.max_batch <= 1:
            await asyncio.gather(
                *(self._resolve(future, self._single(method, params)) for method, params, future in calls)
            )
            return
        ids = [next(self._ids) for _ in calls]
        label = f"a batch of {len(calls)} calls ({calls[0][0]}, ...)"
        try:
            payload = await self._post(
                [build_request(m, p, i) for (m, p, _), i in zip(calls, ids)],
                label,
                all(_idempotent(method) for method, _, _ in calls),
            )
        except FacilitatorError as exc:
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        answers = {a.get("id"): a for a in payload if isinstance(a, dict)} if isinstance(payload, list) else None
        if answers is None:  # this node does not do batches: single requests from now on
            self.max_batch = 1
            await self._dispatch(calls)
            return
        for (method, _, future), request_id in zip(calls, ids):
            if future.done():  # the caller was cancelled
                continue
            try:
                future.set_result(parse_response(method, answers.get(request_id)))
            except RPCError as exc:
                future.set_exception(exc)

    @staticmethod
    async def _resolve(future: asyncio.Future[Any], call: Any) -> None:
        try:
            result = await call
        except Exception as exc:  # noqa: BLE001 - any failure is handed to the waiting caller, who re-raises it
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    async def _single(self, method: str, params: tuple[Any, ...]) -> Any:
        request = build_request(method, params, next(self._ids))
        return parse_response(method, await self._post(request, method, _idempotent(method)))

    async def _post(self, body: Any, label: str, idempotent: bool) -> Any:
        try:
            status, content = await send_json(self._client, "POST", self.url, body=body, idempotent=idempotent)
        except TRANSPORT_ERRORS as exc:
            raise FacilitatorError(f"the chain RPC at {self.url} is unreachable ({label}): {exc!r}") from exc
        if status >= 500 or not content:
            raise FacilitatorError(f"the chain RPC at {self.url} answered HTTP {status} to {label}")
        try:
            return _json.loads(content)
        except ValueError:
            raise FacilitatorError(f"the chain RPC at {self.url} answered non-JSON to {label}") from None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
