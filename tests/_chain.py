"""Reusable dev-chain helpers for any test folder: a started :class:`DevChain` and EIP-3009/2612 signing.

Signing goes through ``eth_account.Account.sign_typed_data`` (generic EIP-712), independent of the
package's own hand-specialised digest code. Typical session fixture::

    @pytest.fixture(scope="session")
    def dev_chain() -> Iterator[DevChain]:
        chain = start_dev_chain("base-sepolia")
        yield chain
        chain.stop()
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from tests._servers import process_with_url
from x402_middleware.devchain import DevChain, RPCError, encode_call
from x402_middleware.devchain.chain import PERMIT2_ADDRESS

# secp256k1 group order: (r, n - s) with the other v is the malleable twin of (r, s).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

TWA_VRS = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
TWA_BYTES = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
RWA_VRS = "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
RWA_BYTES = "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
CANCEL_VRS = "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"
CANCEL_BYTES = "cancelAuthorization(address,bytes32,bytes)"
PERMIT_VRS = "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


def start_dev_chain(network: str = "local", **kwargs: Any) -> DevChain:
    """A started :class:`DevChain` (anvil + token + funded wallets); the caller must ``stop()`` it."""
    return DevChain(network, **kwargs).start()


@dataclass(frozen=True)
class Signed:
    """An EIP-712 signature split for both ABI overloads."""

    v: int
    r: bytes
    s: bytes

    @property
    def signature(self) -> bytes:
        return self.r + self.s + bytes([self.v])

    def high_s(self) -> Signed:
        """The malleable twin (r, n - s, flipped v): recovers the same signer, must be refused."""
        s = SECP256K1_N - int.from_bytes(self.s, "big")
        return Signed(55 - self.v, self.r, s.to_bytes(32, "big"))


@dataclass(frozen=True)
class Authorization:
    """A signed EIP-3009 authorization (``TransferWithAuthorization`` or ``ReceiveWithAuthorization``)."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    sig: Signed

    @property
    def fields(self) -> tuple[Any, ...]:
        return (self.from_, self.to, self.value, self.valid_after, self.valid_before, self.nonce)

    def calldata(self, function: str = TWA_VRS, sig: Signed | None = None) -> bytes:
        """Calldata for one of the four ``*WithAuthorization`` overloads (vrs or bytes by signature text)."""
        sig = sig or self.sig
        if function.endswith("bytes)"):
            return encode_call(function, *self.fields, sig.signature)
        return encode_call(function, *self.fields, sig.v, sig.r, sig.s)


def sign_typed(
    key: str, domain: dict[str, Any], primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> Signed:
    typed = {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }
    signed = Account.sign_typed_data(key, full_message=typed)
    return Signed(signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))


def sign_authorization(
    chain: DevChain,
    key: str,
    *,
    to: str,
    value: int,
    valid_after: int = 0,
    valid_before: int = 2**48,
    nonce: bytes | None = None,
    primary: str = "TransferWithAuthorization",
    from_: str | None = None,
    domain: dict[str, Any] | None = None,
) -> Authorization:
    """Sign an EIP-3009 authorization with ``key``; ``from_`` defaults to the key's address."""
    nonce = nonce if nonce is not None else secrets.token_bytes(32)
    sender = from_ or Account.from_key(key).address
    message = {
        "from": sender,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    sig = sign_typed(key, domain or chain.eip712_domain(), primary, _AUTH_FIELDS, message)
    return Authorization(sender, to, value, valid_after, valid_before, nonce, sig)


def sign_cancel(chain: DevChain, key: str, authorizer: str, nonce: bytes) -> Signed:
    fields = [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
    return sign_typed(
        key, chain.eip712_domain(), "CancelAuthorization", fields, {"authorizer": authorizer, "nonce": nonce}
    )


def sign_permit(chain: DevChain, key: str, *, spender: str, value: int, nonce: int, deadline: int) -> Signed:
    fields = [
        {"name": n, "type": t}
        for n, t in (
            ("owner", "address"),
            ("spender", "address"),
            ("value", "uint256"),
            ("nonce", "uint256"),
            ("deadline", "uint256"),
        )
    ]
    message = {
        "owner": Account.from_key(key).address,
        "spender": spender,
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    return sign_typed(key, chain.eip712_domain(), "Permit", fields, message)


def latest_timestamp(chain: DevChain) -> int:
    """``block.timestamp`` of the latest block (anvil starts at wall-clock time)."""
    return int(chain.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)


def revert_reason(chain: DevChain, key: str, to: str, data: bytes) -> str:
    """Send ``data`` from ``key`` expecting a revert; return the reason (the node's gas estimate reverts)."""
    try:
        chain.send(key, to, data)
    except RPCError as exc:
        if exc.revert_reason is None:
            raise
        return exc.revert_reason
    raise AssertionError("transaction did not revert")


def permit2_typed_data(chain_id: int, message: dict[str, Any]) -> dict[str, Any]:
    """EIP-712 typed data of a Permit2 ``PermitWitnessTransferFrom`` with the official SDK's type tables (the
    ``upto`` witness when ``message["witness"]`` names a facilitator), on Permit2's domain (no version)."""
    from x402.mechanisms.evm.constants import PERMIT2_WITNESS_TYPES, UPTO_PERMIT2_WITNESS_TYPES

    upto = "facilitator" in message["witness"]
    return {
        "types": {
            "EIP712Domain": [f for f in _DOMAIN_FIELDS if f["name"] != "version"],
            **(UPTO_PERMIT2_WITNESS_TYPES if upto else PERMIT2_WITNESS_TYPES),
        },
        "primaryType": "PermitWitnessTransferFrom",
        "domain": {"name": "Permit2", "chainId": chain_id, "verifyingContract": PERMIT2_ADDRESS},
        "message": message,
    }


@contextmanager
def facilitator_process(chain: DevChain, *keys: str) -> Iterator[str]:
    """Our ``x402-facilitator`` server as a real process on ``chain``, paying gas from ``keys``; yields its URL."""
    args = [sys.executable, "-m", "x402_middleware.facilitator", "--rpc-url", chain.rpc_url, "--port", "0"]
    args += ["--network", chain.network]
    for key in keys:
        args += ["--key", key]
    with process_with_url(args) as url:
        yield url
