"""The official Python client (``x402[svm]==2.25.0``) pays OUR middleware on Solana, and the official FastAPI
middleware settles a Solana payment through OUR facilitator server, on the LiteSVM dev chain, over real uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.svm import KeypairSigner
from x402.mechanisms.svm.exact import register_exact_svm_client

from tests._payments import decode
from tests._servers import process_with_url, uvicorn_server
from tests.svm._apps import NETWORK
from x402_middleware import X402Auth, settlement_of
from x402_middleware.devchain.solana import SolanaDevChain

pytestmark = [
    pytest.mark.anyio,
    # solana-py 0.39 (what x402[svm] pins) warns on its own sync Client, which the official client uses.
    pytest.mark.filterwarnings("ignore:Client is deprecated:FutureWarning"),
]
PRICE = 1000


class _Recording(httpx.AsyncBaseTransport):
    """The real transport under the official client, keeping the requests it sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def official_client(sol: SolanaDevChain, payer: int) -> x402Client:
    client = x402Client()
    register_exact_svm_client(client, KeypairSigner.from_base58(sol.payer_secret_keys[payer]), rpc_url=sol.rpc_url)
    return client


@pytest.fixture(scope="module")
def ours(sol: SolanaDevChain) -> Iterator[str]:
    env = {
        "X402_SOLANA_RPC_URL": sol.rpc_url,
        "X402_SOLANA_PAY_TO": sol.pay_to,
        "X402_SOLANA_FEE_PAYER_KEY": sol.fee_payer_secret_keys[0],
    }
    with uvicorn_server("tests.svm._apps:ours", factory=True, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def official_over_our_facilitator(sol: SolanaDevChain) -> Iterator[str]:
    command = [
        sys.executable, "-m", "x402_middleware.facilitator", "--port", "0", "--network", "solana",
        "--rpc-url", sol.rpc_url, "--key", sol.fee_payer_secret_keys[1],
    ]  # fmt: skip
    with process_with_url(command) as facilitator_url:
        env = {"X402_FACILITATOR_URL": facilitator_url, "X402_SOLANA_PAY_TO": sol.pay_to}
        with uvicorn_server("tests.svm._apps:official_remote", factory=True, env=env) as url:
            yield url


def _moved(sol: SolanaDevChain, before: tuple[int, int, int], payer: int, fee_payer: int = 0) -> tuple[int, int, int]:
    now = (
        sol.token_balance(sol.payer_addresses[payer]),
        sol.token_balance(sol.pay_to),
        sol.lamports(sol.fee_payer_addresses[fee_payer]),
    )
    return before[0] - now[0], now[1] - before[1], before[2] - now[2]


def _before(sol: SolanaDevChain, payer: int, fee_payer: int = 0) -> tuple[int, int, int]:
    return (
        sol.token_balance(sol.payer_addresses[payer]),
        sol.token_balance(sol.pay_to),
        sol.lamports(sol.fee_payer_addresses[fee_payer]),
    )


async def test_the_official_python_client_pays_our_middleware(sol: SolanaDevChain, ours: str) -> None:
    client = official_client(sol, payer=0)
    before = _before(sol, 0)
    calls_before = dict(sol.rpc.calls)
    recording = _Recording()
    async with httpx.AsyncClient(transport=x402AsyncTransport(client, transport=recording), base_url=ours) as http:
        r = await http.get("/weather")
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.json() == {"temp": 21, "paid_by": sol.payer_addresses[0], "amount": PRICE}
    assert _moved(sol, before, 0) == (PRICE, PRICE, 10_000)  # the fee payer paid two signatures' fee
    settled = x402HTTPClient(client).get_payment_settle_response(lambda name: r.headers.get(name))
    assert settled.success and settled.payer == sol.payer_addresses[0] and settled.network == NETWORK
    status = sol.rpc.statuses[settled.transaction]
    assert status[1] is None  # the transaction the server reported is the one that ran, and it succeeded
    used = {m for m, n in sol.rpc.calls.items() if n > calls_before.get(m, 0)}
    # What the official client and our facilitator called, all served by the dev chain's RPC:
    # (getGenesisHash, the facilitator's cluster check, runs once per process: on this first payment.)
    assert used == {"getAccountInfo", "getLatestBlockhash", "getGenesisHash", "simulateTransaction",
                    "sendTransaction", "getSignatureStatuses"}  # fmt: skip

    # Replaying the same signed transaction is refused and moves nothing.
    replayed = recording.requests[-1].headers["payment-signature"]
    again_before = _before(sol, 0)
    async with httpx.AsyncClient(base_url=ours) as plain:
        replay = await plain.get("/weather", headers={"PAYMENT-SIGNATURE": replayed})
    assert replay.status_code == 402
    assert decode(replay.headers["payment-required"])["error"] == "duplicate_settlement"
    assert _moved(sol, again_before, 0) == (0, 0, 0)


async def test_the_official_middleware_settles_through_our_facilitator_server(
    sol: SolanaDevChain, official_over_our_facilitator: str
) -> None:
    client = official_client(sol, payer=1)
    before = _before(sol, 1, fee_payer=1)
    async with httpx.AsyncClient(transport=x402AsyncTransport(client), base_url=official_over_our_facilitator) as http:
        r = await http.get("/weather")
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.json() == {"temp": 21}
    settled = x402HTTPClient(client).get_payment_settle_response(lambda name: r.headers.get(name))
    assert settled.success and settled.network == NETWORK
    assert sol.rpc.statuses[settled.transaction][1] is None
    assert _moved(sol, before, 1, fee_payer=1) == (PRICE, PRICE, 10_000)


def test_our_client_pays_the_official_middleware(sol: SolanaDevChain, official_over_our_facilitator: str) -> None:
    before = _before(sol, 2, fee_payer=1)
    auth = X402Auth(solana_key=sol.payer_secret_keys[2], solana_rpc_url=sol.rpc_url, max_total_spend="$0.01")
    with httpx.Client(base_url=official_over_our_facilitator, auth=auth) as http:
        r = http.get("/weather")
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.payer == sol.payer_addresses[2]
    assert _moved(sol, before, 2, fee_payer=1) == (PRICE, PRICE, 10_000)
    assert auth.spent == PRICE
