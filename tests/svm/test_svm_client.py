"""X402Auth's Solana configuration errors say how to fix them (no chain needed)."""

from __future__ import annotations

import httpx
import pytest

from x402_middleware import ConfigurationError, PaymentClientError, X402Auth
from x402_middleware.networks import SOLANA_MAINNET
from x402_middleware.svm import Keypair

from ._tx import requirement_wire


def test_a_key_is_needed_and_a_solana_key_must_be_one() -> None:
    with pytest.raises(ConfigurationError, match="account= .* solana_key="):
        X402Auth()
    with pytest.raises(ConfigurationError, match="base58"):
        X402Auth(solana_key="not a key")
    keypair = Keypair()
    auth = X402Auth(solana_key=str(keypair))
    assert auth.solana_address == str(keypair.pubkey()) and auth.address is None
    assert X402Auth(solana_key=bytes(keypair)).solana_address == auth.solana_address


def _challenge_app(accepts: list[dict[str, object]]) -> httpx.MockTransport:
    import base64
    import json

    header = base64.b64encode(json.dumps({"x402Version": 2, "accepts": accepts, "resource": {"url": "x"}}).encode())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": header.decode()}, json={})

    return httpx.MockTransport(handler)


def test_paying_solana_without_an_rpc_url_says_so() -> None:
    offer = requirement_wire(
        network=SOLANA_MAINNET,
        mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        pay_to=str(Keypair().pubkey()),
        amount=1000,
        fee_payer=str(Keypair().pubkey()),
    )
    auth = X402Auth(solana_key=str(Keypair()))
    with (
        httpx.Client(transport=_challenge_app([offer]), auth=auth) as http,
        pytest.raises(PaymentClientError, match="solana_rpc_url"),
    ):
        http.get("http://test/weather")


def test_an_evm_only_client_explains_why_it_cannot_pay_solana() -> None:
    offer = requirement_wire(
        network=SOLANA_MAINNET,
        mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        pay_to=str(Keypair().pubkey()),
        amount=1000,
        fee_payer=str(Keypair().pubkey()),
    )
    auth = X402Auth("0x" + "11" * 32)
    with (
        httpx.Client(transport=_challenge_app([offer]), auth=auth) as http,
        pytest.raises(PaymentClientError, match="needs solana_key="),
    ):
        http.get("http://test/weather")
