"""OUR middleware offering Base and Solana in one route; X402Auth pays the Solana option on the LiteSVM runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests._payments import decode, encode
from tests.svm._tx import transfer_tx
from x402_middleware import PaymentMiddleware, X402Auth, settlement_of
from x402_middleware.devchain.solana import SolanaDevChain
from x402_middleware.facilitator import MultiFacilitator, OnChainFacilitator, SolanaFacilitator
from x402_middleware.networks import SOLANA_MAINNET
from x402_middleware.schemes.svm.exact import set_fee_payer

pytestmark = pytest.mark.anyio
BASE = "eip155:8453"
EVM_PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
PRICE = 1000


@pytest.fixture(scope="module")
def fee_payer(sol: SolanaDevChain) -> Iterator[str]:
    set_fee_payer(SOLANA_MAINNET, sol.fee_payer_addresses[0])
    try:
        yield sol.fee_payer_addresses[0]
    finally:
        set_fee_payer(SOLANA_MAINNET, None)


@pytest.fixture
async def app(sol: SolanaDevChain, fee_payer: str) -> AsyncIterator[Any]:
    async def weather(request: Request) -> JSONResponse:
        payment = request.scope["x402.payment"]
        return JSONResponse({"paid_by": payment.payer, "network": payment.network.caip2})

    solana = SolanaFacilitator(sol.rpc_url, sol.fee_payer_secret_keys, network=SOLANA_MAINNET)
    # The Base facilitator is never called here (nobody pays on Base); it only has to exist.
    base = OnChainFacilitator("http://127.0.0.1:9", ["0x" + "11" * 32], network=BASE)
    facilitator = MultiFacilitator(base, solana)
    yield PaymentMiddleware(
        Starlette(routes=[Route("/weather", weather)]),
        routes={"GET /weather": "$0.001"},
        pay_to={"eip155": EVM_PAY_TO, "solana": sol.pay_to},
        network=[BASE, SOLANA_MAINNET],
        facilitator=facilitator,
    )
    await facilitator.aclose()


def _client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", **kwargs)


async def test_the_402_offers_base_and_solana(sol: SolanaDevChain, app: Any, fee_payer: str) -> None:
    async with _client(app) as http:
        r = await http.get("/weather")
    assert r.status_code == 402
    accepts = decode(r.headers["payment-required"])["accepts"]
    assert [a["network"] for a in accepts] == [BASE, SOLANA_MAINNET]
    assert accepts[1] == {
        "scheme": "exact",
        "network": SOLANA_MAINNET,
        "amount": str(PRICE),
        "asset": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "payTo": sol.pay_to,
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": fee_payer},
    }
    # The v1 body: Base only, since PyPI x402 1.0.0 rejects a whole 402 naming "solana".
    assert [a["network"] for a in r.json()["accepts"]] == ["base"]


async def test_x402auth_pays_the_solana_option(sol: SolanaDevChain, app: Any) -> None:
    auth = X402Auth(solana_key=sol.payer_secret_keys[0], solana_rpc_url=sol.rpc_url)
    before = sol.token_balance(sol.payer_addresses[0]), sol.token_balance(sol.pay_to)
    async with _client(app, auth=auth) as http:
        r = await http.get("/weather")
    assert r.status_code == 200, r.text
    assert r.json() == {"paid_by": sol.payer_addresses[0], "network": SOLANA_MAINNET}
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.network == SOLANA_MAINNET
    assert sol.rpc.statuses[settled.transaction][1] is None
    assert (sol.token_balance(sol.payer_addresses[0]), sol.token_balance(sol.pay_to)) == (
        before[0] - PRICE,
        before[1] + PRICE,
    )
    assert auth.spent == PRICE


async def test_x402auth_with_both_keys_prefers_the_network_asked(sol: SolanaDevChain, app: Any) -> None:
    auth = X402Auth("0x" + "22" * 32, solana_key=sol.payer_secret_keys[1], solana_rpc_url=sol.rpc_url,
                    prefer_networks=["solana"])  # fmt: skip
    before = sol.token_balance(sol.payer_addresses[1])
    async with _client(app, auth=auth) as http:
        r = await http.get("/weather")
    assert r.status_code == 200 and r.json()["network"] == SOLANA_MAINNET
    assert sol.token_balance(sol.payer_addresses[1]) == before - PRICE


def _payment_header(sol: SolanaDevChain, accepted: dict[str, Any], **changes: Any) -> str:
    args: dict[str, Any] = {
        "payer": sol.payers[2],
        "fee_payer": sol.fee_payer_addresses[0],
        "mint": sol.mint,
        "pay_to": sol.pay_to,
        "amount": PRICE,
        "blockhash": str(sol.svm.latest_blockhash()),  # type: ignore[union-attr]
        **changes,
    }
    tx = transfer_tx(**args)
    return encode({"x402Version": 2, "accepted": accepted, "payload": {"transaction": tx}})


async def test_copies_of_one_payment_are_served_once_and_a_replay_is_refused(sol: SolanaDevChain, app: Any) -> None:
    async with _client(app) as http:
        accepted = decode((await http.get("/weather")).headers["payment-required"])["accepts"][1]
        header = _payment_header(sol, accepted)
        before = sol.token_balance(sol.payer_addresses[2])
        responses = await asyncio.gather(
            *(http.get("/weather", headers={"PAYMENT-SIGNATURE": header}) for _ in range(4))
        )
        assert sorted(r.status_code for r in responses) == [200, 402, 402, 402]
        refused = {decode(r.headers["payment-required"])["error"] for r in responses if r.status_code == 402}
        assert refused <= {"payment_in_progress", "duplicate_settlement"}
        later = await http.get("/weather", headers={"PAYMENT-SIGNATURE": header})
        assert later.status_code == 402
        assert decode(later.headers["payment-required"])["error"] == "duplicate_settlement"
    assert sol.token_balance(sol.payer_addresses[2]) == before - PRICE


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": PRICE - 1}, "invalid_exact_svm_payload_amount_mismatch"),
        ({"pay_to": "11111111111111111111111111111112"}, "invalid_exact_svm_payload_recipient_mismatch"),
        ({"fee_payer": "11111111111111111111111111111112"}, "invalid_exact_svm_fee_payer_mismatch"),
    ],
)
async def test_a_bad_payment_is_refused_before_the_app_runs(
    sol: SolanaDevChain, app: Any, changes: dict[str, Any], reason: str
) -> None:
    async with _client(app) as http:
        accepted = decode((await http.get("/weather")).headers["payment-required"])["accepts"][1]
        before = sol.token_balance(sol.payer_addresses[2]), sol.token_balance(sol.pay_to)
        r = await http.get("/weather", headers={"PAYMENT-SIGNATURE": _payment_header(sol, accepted, **changes)})
    assert r.status_code == 402
    assert decode(r.headers["payment-required"])["error"] == reason
    assert (sol.token_balance(sol.payer_addresses[2]), sol.token_balance(sol.pay_to)) == before


@pytest.mark.filterwarnings("ignore:Client is deprecated:FutureWarning")
async def test_a_solana_only_route_is_paid_over_v1_by_the_official_client(sol: SolanaDevChain, fee_payer: str) -> None:
    """With no EVM option the v1 body lists ``solana``; given only that body, the official client pays with X-PAYMENT."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402AsyncTransport
    from x402.mechanisms.svm import KeypairSigner
    from x402.mechanisms.svm.exact import register_exact_svm_client

    async def weather(request: Request) -> JSONResponse:
        return JSONResponse({"paid_by": request.scope["x402.payment"].payer})

    facilitator = SolanaFacilitator(sol.rpc_url, sol.fee_payer_secret_keys, network=SOLANA_MAINNET)
    protected = PaymentMiddleware(
        Starlette(routes=[Route("/weather", weather)]),
        routes={"GET /weather": "$0.001"},
        pay_to=sol.pay_to,
        network="solana",
        facilitator=facilitator,
    )

    async def v1_only(scope: Any, receive: Any, send: Any) -> None:
        async def without_v2_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message["headers"] if k.lower() != b"payment-required"]
            await send(message)

        await protected(scope, receive, without_v2_header)

    client = x402Client()
    register_exact_svm_client(client, KeypairSigner.from_base58(sol.payer_secret_keys[2]), rpc_url=sol.rpc_url)
    before = sol.token_balance(sol.payer_addresses[2])
    transport = x402AsyncTransport(client, transport=httpx.ASGITransport(app=v1_only))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=v1_only), base_url="http://test") as plain:
                unpaid = await plain.get("/weather")
            [entry] = unpaid.json()["accepts"]
            assert (entry["network"], entry["extra"]["feePayer"], entry["maxAmountRequired"]) == (
                "solana",
                fee_payer,
                "1000",
            )
            r = await http.get("/weather")
    finally:
        await facilitator.aclose()
    assert r.status_code == 200, (r.status_code, r.text)
    settled = decode(r.headers["x-payment-response"])
    assert settled["success"] is True and settled["network"] == "solana"  # v1: the legacy network name
    assert sol.token_balance(sol.payer_addresses[2]) == before - PRICE
