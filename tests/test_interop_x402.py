"""Interop with the official x402 SDK (PyPI ``x402==2.25.0``) on a real anvil dev chain, over real uvicorn servers.

(a) the official client (``x402Client`` + exact EVM scheme + ``EthAccountSigner`` through its httpx transport)
    pays an app protected by OUR PaymentMiddleware, which settles on chain;
(b) OUR ``X402Auth`` pays an app protected by the OFFICIAL FastAPI middleware with the official in-process
    facilitator (``ExactEvmFacilitatorScheme(FacilitatorWeb3Signer)``) settling on the same chain.

The chain emulates Base Sepolia: the token sits at the canonical USDC address, so the official client's
default spend controls accept it and both sides use their built-in asset tables unchanged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from tests._payments import decode
from tests._servers import uvicorn_server
from x402_middleware import X402Auth, settlement_of
from x402_middleware.devchain import DevChain

pytestmark = pytest.mark.anyio
PRICE = 1000  # "$0.001" in USDC atomic units
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    with DevChain("base-sepolia", payers=2, facilitators=2) as dev:
        yield dev


@pytest.fixture(scope="module")
def servers(chain: DevChain) -> Iterator[dict[str, str]]:
    """Both apps, started side by side (each uvicorn process imports its stack in parallel)."""
    urls: dict[str, str] = {}
    errors: list[BaseException] = []
    with ExitStack() as stack:

        def start(name: str, key: str) -> None:
            env = {"X402_RPC_URL": chain.rpc_url, "X402_FACILITATOR_KEY": key, "X402_PAY_TO": chain.pay_to}
            try:
                urls[name] = stack.enter_context(uvicorn_server(f"tests._interop_apps:{name}", factory=True, env=env))
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test thread
                errors.append(exc)

        threads = [
            threading.Thread(target=start, args=(name, key))
            for name, key in zip(("ours", "official"), chain.facilitator_keys)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        yield urls


def assert_transfer(chain: DevChain, tx: str, payer: str, amount: int) -> None:
    """``tx`` is a mined, successful transaction on the token emitting Transfer(payer -> pay_to, amount)."""
    receipt = chain.rpc("eth_getTransactionReceipt", tx)
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert receipt["to"].lower() == chain.asset.lower()
    transfers = [log for log in receipt["logs"] if log["topics"][0] == TRANSFER_TOPIC]
    assert len(transfers) == 1
    topics = transfers[0]["topics"]
    assert int(topics[1], 16) == int(payer, 16) and int(topics[2], 16) == int(chain.pay_to, 16)
    assert int(transfers[0]["data"], 16) == amount


def official_client(payer_key: str) -> x402Client:
    """The official client as its docs set it up: exact EVM scheme (v2 ``eip155:*`` and v1 networks), default
    spend controls (default assets only, at most $1)."""
    x402 = x402Client()
    register_exact_evm_client(x402, EthAccountSigner(Account.from_key(payer_key)))
    return x402


class _Recording(httpx.AsyncBaseTransport):
    """Wraps the real transport under the official client to see the headers it sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.statuses: list[tuple[int, bool]] = []  # (status, carried PAYMENT-REQUIRED)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        self.statuses.append((response.status_code, "payment-required" in response.headers))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_official_client_pays_our_middleware_on_chain(chain: DevChain, servers: dict[str, str]) -> None:
    payer_key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    x402 = official_client(payer_key)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    recording = _Recording()
    async with httpx.AsyncClient(
        transport=x402AsyncTransport(x402, transport=recording), base_url=servers["ours"]
    ) as http:
        r = await http.get("/weather")
    assert r.status_code == 200, r.text
    assert r.json() == {"temp": 21, "paid_by": payer, "amount": PRICE}
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - PRICE, before[1] + PRICE)

    sent = [req.headers.get("payment-signature") for req in recording.requests]
    assert sent[0] is None and sent[1] is not None  # unpaid, then one paid retry with the v2 header
    assert recording.statuses == [(402, True), (200, False)]
    settled = x402HTTPClient(x402).get_payment_settle_response(lambda name: r.headers.get(name))
    assert settled.success and settled.payer == payer and settled.network == "eip155:84532"
    assert settled.transaction == decode(r.headers["payment-response"])["transaction"]
    assert_transfer(chain, settled.transaction, payer, PRICE)
    nonce = decode(sent[1])["payload"]["authorization"]["nonce"]
    assert chain.authorization_state(payer, nonce) is True

    # Replaying the official client's signature is refused and moves nothing.
    async with httpx.AsyncClient(base_url=servers["ours"]) as plain:
        replay = await plain.get("/weather", headers={"PAYMENT-SIGNATURE": sent[1]})
    assert replay.status_code == 402
    assert decode(replay.headers["payment-required"])["error"] == "invalid_exact_evm_nonce_already_used"
    assert chain.balance_of(payer) == before[0] - PRICE


async def test_official_client_pays_our_middleware_over_v1(chain: DevChain, servers: dict[str, str]) -> None:
    """Our server is dual-stack: with only the v1 body to go on, the official client pays with X-PAYMENT."""
    payer_key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    x402 = official_client(payer_key)
    before = chain.balance_of(payer)
    recording = _Recording()
    async with httpx.AsyncClient(
        transport=x402AsyncTransport(x402, transport=recording), base_url=servers["ours"]
    ) as http:
        r = await http.get("/legacy/weather")
    assert r.status_code == 200, r.text
    assert recording.statuses == [(402, False), (200, False)]  # the client had only the v1 body to go on
    sent = recording.requests[1].headers
    assert "payment-signature" not in sent and decode(sent["x-payment"])["x402Version"] == 1
    settled = decode(r.headers["x-payment-response"])
    assert settled["success"] is True and settled["network"] == "base-sepolia" and "payment-response" not in r.headers
    assert_transfer(chain, settled["transaction"], payer, PRICE)
    assert chain.balance_of(payer) == before - PRICE


def _paid_by_us(chain: DevChain, r: httpx.Response, payer: str) -> str:
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.json() == {"temp": 21} and [h.status_code for h in r.history] == [402]
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.payer == payer
    assert settled.network == "eip155:84532"
    assert_transfer(chain, settled.transaction, payer, PRICE)
    return settled.transaction


def test_our_client_pays_the_official_middleware_on_chain(chain: DevChain, servers: dict[str, str]) -> None:
    payer_key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    auth = X402Auth(Account.from_key(payer_key), max_total_spend="$0.01")
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    with httpx.Client(base_url=servers["official"], auth=auth) as http:
        unpaid = httpx.get(servers["official"] + "/weather")
        assert unpaid.status_code == 402 and unpaid.json() == {}  # the official server is v2-only: header, no body
        tx = _paid_by_us(chain, http.get("/weather"), payer)
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - PRICE, before[1] + PRICE)
    assert auth.spent == PRICE and tx.startswith("0x") and len(tx) == 66


async def test_our_async_client_pays_the_official_middleware_concurrently(
    chain: DevChain, servers: dict[str, str]
) -> None:
    payer_key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    auth = X402Auth(payer_key)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    async with httpx.AsyncClient(base_url=servers["official"], auth=auth) as http:
        responses: list[Any] = await asyncio.gather(*(http.get("/weather") for _ in range(3)))
    txs = {_paid_by_us(chain, r, payer) for r in responses}
    assert len(txs) == 3
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - 3 * PRICE, before[1] + 3 * PRICE)
