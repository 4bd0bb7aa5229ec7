"""Small apps served by real uvicorn processes in tests (importable as ``tests.apps:...``)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, cast

from tests._facilitator_double import FakeFacilitator
from x402_middleware import PaymentMiddleware
from x402_middleware.facilitator import Facilitator
from x402_middleware.stores import PaymentStore

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


async def _stream(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/free":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"free"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(3):
        await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await asyncio.sleep(float(os.environ.get("STREAM_GAP", "0.4")))
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def streaming_app() -> PaymentMiddleware:
    return PaymentMiddleware(
        _stream, routes={"GET /stream": "$0.001"}, pay_to=PAY_TO, network="eip155:84532", facilitator=FakeFacilitator()
    )


_RUNS: list[str] = []


async def _slow(scope: Any, receive: Any, send: Any) -> None:
    """``GET /runs`` (free): how often the paid handler ran; ``GET /slow`` (paid): waits ``APP_DELAY`` s, then 200."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/runs":
        body = str(len(_RUNS)).encode()
    else:
        _RUNS.append(scope["path"])
        await asyncio.sleep(float(os.environ.get("APP_DELAY", "0")))
        body = b"CONTENT"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def onchain_app(store: PaymentStore | None = None) -> PaymentMiddleware:
    """A paid app settling through the real :class:`OnChainFacilitator` on the dev chain named by the environment."""
    from x402_middleware.facilitator import OnChainFacilitator

    facilitator = OnChainFacilitator(
        os.environ["RPC_URL"], [os.environ["FACILITATOR_KEY"]], network=os.environ["NETWORK"]
    )
    return PaymentMiddleware(
        _slow,
        routes={"GET /slow": "$0.01"},
        pay_to=os.environ["PAY_TO"],
        network=os.environ["NETWORK"],
        facilitator=facilitator,
        check_funds=os.environ.get("CHECK_FUNDS") == "1",  # False is the default
        store=store,
    )


def replica_app() -> PaymentMiddleware:
    """:func:`onchain_app` as one of several replicas: on the Redis store at ``REDIS_URL`` when set, else on its
    own process memory (which replicas do not share)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return onchain_app()
    from x402_middleware.stores.redis import RedisStore

    return onchain_app(RedisStore.from_url(url, prefix=os.environ.get("REDIS_PREFIX", "x402:")))


async def _echo_paid(scope: Any, receive: Any, send: Any) -> None:
    """``POST /paid`` (paid): reads the body, answers ``CONTENT:<body>`` in two chunks. ``KILL_AT=body`` SIGKILLs
    the process after the first chunk (the client has ``PAYMENT-RESPONSE`` and half a body)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    _RUNS.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"CONTENT:", "more_body": True})
    if os.environ.get("KILL_AT") == "body":
        os.kill(os.getpid(), signal.SIGKILL)
    await send({"type": "http.response.body", "body": body})


def journal_app() -> Any:
    """A paid app on the dev chain with a settlement journal (``JOURNAL``: a SQLite path, or ``postgresql://``).

    ``KILL_AT=settled``: SIGKILL right after the journal recorded the settlement (mined, response not sent);
    ``KILL_AT=before-journal``: SIGKILL as the facilitator's settle returns, *before* the journal wrote it (its
    row stays ``settling``); ``KILL_AT=body``: mid-body (see :func:`_echo_paid`). ``RECONCILE=1`` reconciles the journal
    on chain at start-up. ``REDIS_URL``: the shared Redis store. ``GET /runs`` counts paid runs."""
    from x402_middleware.facilitator import OnChainFacilitator
    from x402_middleware.journal import open_journal, reconcile

    journal = open_journal(os.environ["JOURNAL"])
    if os.environ.get("RECONCILE") == "1":
        reconcile(journal, os.environ["RPC_URL"])
    kill_at = os.environ.get("KILL_AT", "")

    def killer(event: Any) -> None:
        if event.kind == "settled" and kill_at == "settled":
            os.kill(os.getpid(), signal.SIGKILL)

    onchain = OnChainFacilitator(os.environ["RPC_URL"], [os.environ["FACILITATOR_KEY"]], network=os.environ["NETWORK"])

    class KillAfterSettle:  # the transfer is mined; the process dies before anyone hears of it
        async def verify(self, payload: Any, requirements: Any) -> Any:
            return await onchain.verify(payload, requirements)

        async def settle(self, payload: Any, requirements: Any) -> Any:
            await onchain.settle(payload, requirements)
            os.kill(os.getpid(), signal.SIGKILL)

    store = None
    if os.environ.get("REDIS_URL"):
        from x402_middleware.stores.redis import RedisStore

        store = RedisStore.from_url(os.environ["REDIS_URL"], prefix=os.environ.get("REDIS_PREFIX", "x402:"))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/runs":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": str(len(_RUNS)).encode()})
            return
        await _echo_paid(scope, receive, send)

    return PaymentMiddleware(
        app,
        routes={"POST /paid": "$0.01"},
        pay_to=os.environ["PAY_TO"],
        network=os.environ["NETWORK"],
        facilitator=cast(Facilitator, KillAfterSettle()) if kill_at == "before-journal" else onchain,
        store=store,
        listeners=[killer],
        journal=journal,
    )


def gateway_replica() -> Any:
    """One replica of the paid gateway: the upstream emulator at ``EMULATOR_URL``, settling on the dev chain with
    its own facilitator key ``FACILITATOR_KEY`` (replicas never share a gas key), on the Redis store at
    ``REDIS_URL`` (prefix ``REDIS_PREFIX``), with the settlement journal at ``JOURNAL`` when set."""
    from examples.gateway.config import GatewayConfig, emulator_pools
    from examples.gateway.paid import create_paid_app
    from x402_middleware.facilitator import OnChainFacilitator
    from x402_middleware.journal import open_journal
    from x402_middleware.stores.redis import RedisStore

    catalog = GatewayConfig().load_catalog()
    config = GatewayConfig(catalog=catalog, pools=emulator_pools(os.environ["EMULATOR_URL"], catalog))
    network = os.environ["NETWORK"]
    return create_paid_app(
        config,
        pay_to=os.environ["PAY_TO"],
        network=network,
        facilitator=OnChainFacilitator(os.environ["RPC_URL"], [os.environ["FACILITATOR_KEY"]], network=network),
        store=RedisStore.from_url(os.environ["REDIS_URL"], prefix=os.environ["REDIS_PREFIX"]),
        journal=open_journal(os.environ["JOURNAL"]) if os.environ.get("JOURNAL") else None,
    )
