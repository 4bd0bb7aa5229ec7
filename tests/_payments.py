"""Test helpers: sign x402 payments with eth-account (independently of the code under test)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from eth_account import Account

# anvil / hardhat dev accounts (public test keys, hold nothing real).
PAYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PAYER = Account.from_key(PAYER_KEY).address
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
BASE_SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def sign_authorization(
    key: str,
    *,
    to: str,
    value: int,
    asset: str,
    chain_id: int,
    name: str = "USDC",
    version: str = "2",
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """An EIP-3009 ``payload`` object ({signature, authorization}) signed with eth-account."""
    valid_before = int(time.time()) + 300 if valid_before is None else valid_before
    nonce = nonce or secrets.token_bytes(32)
    sender = Account.from_key(key).address
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": name, "version": version, "chainId": chain_id, "verifyingContract": asset},
        "message": {
            "from": sender,
            "to": to,
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        },
    }
    signed = Account.sign_typed_data(key, full_message=typed)
    return {
        "signature": "0x" + bytes(signed.signature).hex(),
        "authorization": {
            "from": sender,
            "to": to,
            "value": str(value),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
            "nonce": "0x" + nonce.hex(),
        },
    }


def pay_v2(challenge: dict[str, Any], key: str = PAYER_KEY, index: int = 0, **overrides: Any) -> str:
    """Answer a decoded v2 PAYMENT-REQUIRED with a base64 PAYMENT-SIGNATURE, like a real client."""
    req = challenge["accepts"][index]
    chain_id = int(req["network"].split(":")[1])
    kwargs: dict[str, Any] = {
        "to": req["payTo"],
        "value": int(req["amount"]),
        "asset": req["asset"],
        "chain_id": chain_id,
        "name": req["extra"]["name"],
        "version": req["extra"]["version"],
    }
    kwargs.update(overrides)
    payload = {
        "x402Version": 2,
        "resource": challenge.get("resource"),
        "accepted": req,
        "payload": sign_authorization(key, **kwargs),
    }
    return encode(payload)


def pay_v1(body: dict[str, Any], key: str = PAYER_KEY, chain_id: int = 84532, index: int = 0, **overrides: Any) -> str:
    """Answer a v1 402 body with a base64 X-PAYMENT."""
    req = body["accepts"][index]
    kwargs: dict[str, Any] = {
        "to": req["payTo"],
        "value": int(req["maxAmountRequired"]),
        "asset": req["asset"],
        "chain_id": chain_id,
        "name": req["extra"]["name"],
        "version": req["extra"]["version"],
    }
    kwargs.update(overrides)
    payload = {
        "x402Version": 1,
        "scheme": req["scheme"],
        "network": req["network"],
        "payload": sign_authorization(key, **kwargs),
    }
    return encode(payload)


def encode(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def decode(value: str) -> Any:
    return json.loads(base64.b64decode(value))
