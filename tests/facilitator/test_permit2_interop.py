"""Permit2 interop with the official SDKs (unmodified), on the dev chain, through OUR facilitator.

(a) the official Python ``x402==2.25.0`` clients sign ``upto`` and ``exact``-Permit2 payloads that our
    OnChainFacilitator verifies and settles; (b) the official TypeScript ``@x402/evm@2.27.0`` ``upto`` client
    does the same; (c) OUR ``X402Auth`` pays an app protected by the official SDK's ``upto`` server middleware,
    which verifies and settles through our ``x402-facilitator`` HTTP server. Balances are read from the chain:
    the payer loses exactly the settled amount.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account
from x402.extensions.eip2612_gas_sponsoring import declare_eip2612_gas_sponsoring_extension
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmScheme as OfficialExact
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC
from x402.mechanisms.evm.upto import UptoEvmScheme as OfficialUpto
from x402.schemas import PaymentRequirements as OfficialRequirements

from tests._chain import facilitator_process
from tests._payments import decode
from tests._servers import uvicorn_server
from x402_middleware import SpendLimitError, X402Auth, settlement_of
from x402_middleware.devchain import DevChain
from x402_middleware.devchain.chain import PERMIT2_ADDRESS
from x402_middleware.evm.abi import selector
from x402_middleware.facilitator._permit2 import UPTO_SETTLE_WITH_PERMIT
from x402_middleware.facilitator.onchain import OnChainFacilitator
from x402_middleware.models import parse_payment_payload, parse_requirements

REPO = Path(__file__).resolve().parents[2]
MAX = 5_000


def wire_requirement(chain: DevChain, scheme: str, facilitator: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"name": chain.token_name, "version": "2", "assetTransferMethod": "permit2"}
    if scheme == "upto":
        extra["facilitatorAddress"] = facilitator
    return {
        "scheme": scheme,
        "network": chain.network,
        "amount": str(MAX),
        "asset": chain.asset,
        "payTo": chain.pay_to,
        "maxTimeoutSeconds": 300,
        "extra": extra,
    }


async def settle_official_payload(
    chain: DevChain, scheme: str, inner: dict[str, Any], actual: int, payer: str, extensions: Any = None
) -> str:
    """Verify and settle the official client's payload with our facilitator; the settlement's transaction hash."""
    fac = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network)
    wire = wire_requirement(chain, scheme, fac.address)
    envelope: dict[str, Any] = {"x402Version": 2, "accepted": wire, "payload": inner}
    if extensions:
        envelope["extensions"] = extensions
    payment = parse_payment_payload(envelope)
    requirements = parse_requirements(wire, 2)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    verified = await fac.verify(payment, requirements)
    assert verified.is_valid and verified.payer == payer, verified
    result = await fac.settle(payment, dataclasses.replace(requirements, amount=actual))
    assert result.success and result.amount == actual, result
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - actual, before[1] + actual)
    await fac.aclose()
    return result.transaction


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["upto", "exact"])
async def test_official_python_client_payload_settles_through_our_facilitator(chain: DevChain, scheme: str) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    facilitator = Account.from_key(chain.facilitator_keys[0]).address
    official = OfficialRequirements.model_validate(wire_requirement(chain, scheme, facilitator))
    signer = EthAccountSigner(Account.from_key(key))
    inner = (OfficialUpto if scheme == "upto" else OfficialExact)(signer).create_payment_payload(official)
    assert "permit2Authorization" in inner
    await settle_official_payload(chain, scheme, inner, 1_777 if scheme == "upto" else MAX, payer)


@pytest.mark.anyio
async def test_official_python_client_gas_sponsored_permit_pays_without_an_allowance(chain: DevChain) -> None:
    key, payer = chain.payer_keys[2], chain.payer_addresses[2]
    chain.approve_permit2(payer, 0)
    facilitator = Account.from_key(chain.facilitator_keys[0]).address
    official = OfficialRequirements.model_validate(wire_requirement(chain, "upto", facilitator))
    signer = EthAccountSignerWithRPC(Account.from_key(key), rpc_url=chain.rpc_url)  # reads allowance and nonces
    declared = declare_eip2612_gas_sponsoring_extension()  # what a server puts in its 402
    inner = OfficialUpto(signer).create_payment_payload(official, extensions=declared)
    extensions = inner.pop("__extensions")  # the official client's hand-off to x402Client, which sends it as is
    assert extensions["eip2612GasSponsoring"]["info"]["spender"] == PERMIT2_ADDRESS
    tx = await settle_official_payload(chain, "upto", inner, 2_222, payer, extensions=extensions)
    sent = chain.rpc("eth_getTransactionByHash", tx)
    assert sent["input"].startswith("0x" + selector(UPTO_SETTLE_WITH_PERMIT).hex())
    assert chain.allowance(payer) == MAX - 2_222  # the permit approved the maximum, the settlement spent 2222


@pytest.mark.anyio
async def test_official_typescript_upto_client_payload_settles_through_our_facilitator(chain: DevChain) -> None:
    node = shutil.which("node")
    assert node, "node is required (npm ci installs @x402/evm)"
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    facilitator = Account.from_key(chain.facilitator_keys[0]).address
    request = {"key": key, "requirements": wire_requirement(chain, "upto", facilitator)}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [node, str(REPO / "tests" / "facilitator" / "js" / "upto_sign.mjs")],
            input=json.dumps(request).encode(),
            cwd=REPO,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    inner = json.loads(done.stdout)
    assert inner["permit2Authorization"]["witness"]["facilitator"].lower() == facilitator.lower()
    await settle_official_payload(chain, "upto", inner, 4_321, payer)


@pytest.fixture(scope="module")
def facilitator_server(sepolia: DevChain) -> Iterator[str]:
    with facilitator_process(sepolia, sepolia.facilitator_keys[2]) as url:
        yield url


def test_our_client_pays_the_official_upto_server_through_our_facilitator(
    facilitator_server: str, sepolia: DevChain
) -> None:
    chain = sepolia  # no snapshot/revert: the server process keeps its signer's nonce across tests
    supported = httpx.get(facilitator_server + "/supported").json()
    upto = [k for k in supported["kinds"] if k["scheme"] == "upto"]
    assert upto and upto[0]["extra"]["facilitatorAddress"] == chain.facilitator_addresses[2]
    env = {"X402_FACILITATOR_URL": facilitator_server, "X402_PAY_TO": chain.pay_to}
    key, payer = chain.payer_keys[2], chain.payer_addresses[2]
    auth = X402Auth(Account.from_key(key), max_amount_per_payment="$0.005", max_total_spend="$0.01")
    with uvicorn_server("tests._interop_apps:official_upto_remote", factory=True, env=env) as url:
        for used in (1_234, 0):
            before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
            with httpx.Client(auth=auth, base_url=url) as http:
                r = http.get("/tokens", params={"used": used})
            assert r.status_code == 200 and r.json() == {"used": used}
            challenge = decode(r.request.headers["payment-signature"])
            assert challenge["accepted"]["scheme"] == "upto" and challenge["accepted"]["amount"] == str(MAX)
            settlement = settlement_of(r)
            assert settlement is not None and settlement.success, settlement
            assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - used, before[1] + used)
            declared = challenge["extensions"]["eip2612GasSponsoring"]
            assert "signature" not in declared["info"]  # the echo only: this client has no evm_rpc_url
        assert auth.spent == 2 * MAX  # the caps count what was signed: the maximum, twice
        with httpx.Client(auth=auth, base_url=url) as http, pytest.raises(SpendLimitError):
            http.get("/tokens", params={"used": 1})  # a third maximum would pass max_total_spend="$0.01"
        # Without a Permit2 allowance: refused, unless the client may read the chain and sign an EIP-2612 permit.
        chain.approve_permit2(payer, 0)
        with httpx.Client(auth=X402Auth(Account.from_key(key)), base_url=url) as http:
            refused = http.get("/tokens", params={"used": 999})
        assert refused.status_code == 402
        assert decode(refused.headers["payment-required"])["error"] == "permit2_allowance_required"
        before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
        sponsored = X402Auth(Account.from_key(key), evm_rpc_url=chain.rpc_url, max_amount_per_payment="$0.005")
        with httpx.Client(auth=sponsored, base_url=url) as http:
            r = http.get("/tokens", params={"used": 999})
        assert r.status_code == 200, decode(r.headers["payment-required"])["error"]
        info = decode(r.request.headers["payment-signature"])["extensions"]["eip2612GasSponsoring"]["info"]
        assert info["spender"] == PERMIT2_ADDRESS and info["amount"] == str(MAX) and info["from"] == payer
        assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - 999, before[1] + 999)
        assert chain.allowance(payer) == MAX - 999  # the permit approved the maximum in the settling transaction
