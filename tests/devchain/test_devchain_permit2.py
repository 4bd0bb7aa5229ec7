"""Permit2 and the x402 Permit2 proxies on the dev chain: at their canonical addresses, with Permit2's EIP-712
domain (no version) and the original type strings, computed here independently of the package's code."""

from __future__ import annotations

import secrets
import time
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_utils.crypto import keccak

from tests._chain import permit2_typed_data, sign_permit
from x402_middleware.devchain import DevChain, RPCError, encode_call
from x402_middleware.devchain.chain import EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY
from x402_middleware.evm.abi import decode_output, selector
from x402_middleware.facilitator._permit2 import EXACT_SETTLE, EXACT_SETTLE_WITH_PERMIT, UPTO_SETTLE
from x402_middleware.schemes.evm.permit2 import domain_separator


def _view(chain: DevChain, to: str, signature: str, types: str) -> object:
    return decode_output(types, chain.call(to, encode_call(signature)))[0]


def test_contracts_sit_at_the_canonical_addresses_with_permit2s_domain(any_chain: DevChain) -> None:
    chain = any_chain
    for address in (PERMIT2_ADDRESS, EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY):
        assert len(chain.rpc("eth_getCode", address, "latest")) > 1000
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text="EIP712Domain(string name,uint256 chainId,address verifyingContract)"),
                keccak(text="Permit2"),
                chain.chain_id,
                PERMIT2_ADDRESS,
            ],
        )
    )
    assert (
        _view(chain, PERMIT2_ADDRESS, "DOMAIN_SEPARATOR()", "(bytes32)") == expected == domain_separator(chain.chain_id)
    )
    for proxy in (EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY):
        assert str(_view(chain, proxy, "PERMIT2()", "(address)")).lower() == PERMIT2_ADDRESS.lower()
    assert _view(chain, EXACT_PERMIT2_PROXY, "WITNESS_TYPE_STRING()", "(string)") == (
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
    )
    assert _view(chain, UPTO_PERMIT2_PROXY, "WITNESS_TYPE_STRING()", "(string)") == (
        "Witness witness)TokenPermissions(address token,uint256 amount)"
        "Witness(address to,address facilitator,uint256 validAfter)"
    )
    assert _view(chain, PERMIT2_ADDRESS, "_TOKEN_PERMISSIONS_TYPEHASH()", "(bytes32)") == keccak(
        text="TokenPermissions(address token,uint256 amount)"
    )


# ---- behaviour, driven with independently signed messages (generic EIP-712 with the official SDK's types) ----

MAX = 10_000


def _sign(chain: DevChain, key: str, spender: str, witness: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Permit2 witness transfer signed by ``key``: ``{permit, owner, witness, signature}`` as the proxies take them."""
    message = {
        "permitted": {"token": chain.asset, "amount": fields.get("amount", MAX)},
        "spender": spender,
        "nonce": fields.get("nonce", secrets.randbits(256)),
        "deadline": fields.get("deadline", int(time.time()) + 600),
        "witness": witness,
    }
    typed = permit2_typed_data(chain.chain_id, message)
    signed = Account.sign_typed_data(key, full_message=typed)
    permit = ((chain.asset, message["permitted"]["amount"]), message["nonce"], message["deadline"])
    owner = Account.from_key(key).address
    return {"permit": permit, "owner": owner, "witness": tuple(witness.values()), "signature": bytes(signed.signature)}


def _upto(signed: dict[str, Any], amount: int) -> bytes:
    return encode_call(UPTO_SETTLE, signed["permit"], amount, signed["owner"], signed["witness"], signed["signature"])


def _exact(signed: dict[str, Any]) -> bytes:
    return encode_call(EXACT_SETTLE, signed["permit"], signed["owner"], signed["witness"], signed["signature"])


def _error(chain: DevChain, key: str, to: str, data: bytes) -> str:
    """The custom error a call from ``key`` reverts with (by name, from the selectors below)."""
    try:
        chain.send(key, to, data)
    except RPCError as exc:
        raw = exc.data if isinstance(exc.data, str) else ""
        return ERRORS.get(raw[:10], raw or exc.message)
    raise AssertionError("the call did not revert")


ERRORS = {
    "0x" + selector(sig).hex(): sig
    for sig in (
        "InvalidNonce()",
        "InvalidSigner()",
        "SignatureExpired(uint256)",
        "InvalidAmount()",
        "PaymentTooEarly()",
        "UnauthorizedFacilitator()",
        "AmountExceedsPermitted()",
        "Permit2612AmountMismatch()",
    )
}


def test_upto_proxy_moves_the_amount_once_and_only_for_its_facilitator(chain: DevChain) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    facilitator, other = chain.facilitator_keys[0], chain.facilitator_keys[1]
    witness = {"to": chain.pay_to, "facilitator": chain.facilitator_addresses[0], "validAfter": 0}
    signed = _sign(chain, key, UPTO_PERMIT2_PROXY, witness)
    assert _error(chain, other, UPTO_PERMIT2_PROXY, _upto(signed, 1)) == "UnauthorizedFacilitator()"
    assert _error(chain, facilitator, UPTO_PERMIT2_PROXY, _upto(signed, MAX + 1)) == "AmountExceedsPermitted()"
    assert _error(chain, facilitator, UPTO_PERMIT2_PROXY, _upto(signed, 0)) == "InvalidAmount()"
    before = chain.balance_of(payer)
    receipt = chain.send(facilitator, UPTO_PERMIT2_PROXY, _upto(signed, 2_500))
    assert int(receipt["status"], 16) == 1 and chain.balance_of(payer) == before - 2_500
    assert chain.balance_of(chain.pay_to) == 2_500
    nonce = signed["permit"][1]
    bitmap = _view_args(chain, PERMIT2_ADDRESS, "nonceBitmap(address,uint256)", payer, nonce >> 8)
    assert bitmap >> (nonce & 0xFF) & 1 == 1  # Permit2's unordered nonce is spent
    assert _error(chain, facilitator, UPTO_PERMIT2_PROXY, _upto(signed, 1)) == "InvalidNonce()"
    assert chain.balance_of(payer) == before - 2_500


def test_signatures_bind_the_witness_the_deadline_and_validafter(chain: DevChain) -> None:
    key, sender = chain.payer_keys[1], chain.facilitator_keys[0]
    exact = {"to": chain.pay_to, "validAfter": 0}
    signed = _sign(chain, key, EXACT_PERMIT2_PROXY, exact)
    redirected = {**signed, "witness": (chain.facilitator_addresses[1], 0)}  # a facilitator redirecting the money
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, _exact(redirected)) == "InvalidSigner()"
    expired = _sign(chain, key, EXACT_PERMIT2_PROXY, exact, deadline=int(time.time()) - 60)
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, _exact(expired)) == "SignatureExpired(uint256)"
    early = _sign(chain, key, EXACT_PERMIT2_PROXY, {"to": chain.pay_to, "validAfter": int(time.time()) + 3600})
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, _exact(early)) == "PaymentTooEarly()"
    # signed for the upto proxy, submitted through the exact one: Permit2 checks the spender
    upto = _sign(chain, key, UPTO_PERMIT2_PROXY, exact)
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, _exact(upto)) == "InvalidSigner()"
    before = chain.balance_of(chain.payer_addresses[1])
    chain.send(sender, EXACT_PERMIT2_PROXY, _exact(signed))
    assert chain.balance_of(chain.payer_addresses[1]) == before - MAX  # exact moves the signed amount


def test_revoked_nonces_and_mismatched_eip2612_permits_are_refused(chain: DevChain) -> None:
    key, payer, sender = chain.payer_keys[2], chain.payer_addresses[2], chain.facilitator_keys[0]
    signed = _sign(chain, key, EXACT_PERMIT2_PROXY, {"to": chain.pay_to, "validAfter": 0}, nonce=5)
    permit = sign_permit(chain, key, spender=PERMIT2_ADDRESS, value=MAX - 1, nonce=0, deadline=2**255)
    with_permit = encode_call(
        EXACT_SETTLE_WITH_PERMIT,
        (MAX - 1, 2**255, permit.r, permit.s, permit.v),
        signed["permit"],
        signed["owner"],
        signed["witness"],
        signed["signature"],
    )
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, with_permit) == "Permit2612AmountMismatch()"
    chain.approve_permit2(payer, 0)  # the payer never approved Permit2: its EIP-2612 permit does, atomically
    permit = sign_permit(chain, key, spender=PERMIT2_ADDRESS, value=MAX, nonce=0, deadline=2**255)
    args = (signed["permit"], signed["owner"], signed["witness"], signed["signature"])
    chain.send(
        sender,
        EXACT_PERMIT2_PROXY,
        encode_call(EXACT_SETTLE_WITH_PERMIT, (MAX, 2**255, permit.r, permit.s, permit.v), *args),
    )
    assert chain.allowance(payer) == 0 and chain.balance_of(chain.pay_to) == MAX
    # the owner revokes unspent nonces (word 0, bits 6 and 7) with Permit2's invalidateUnorderedNonces
    chain.approve_permit2(payer)
    revoked = _sign(chain, key, EXACT_PERMIT2_PROXY, {"to": chain.pay_to, "validAfter": 0}, nonce=7)
    chain.rpc("anvil_setBalance", payer, hex(10**18))
    chain.send(key, PERMIT2_ADDRESS, encode_call("invalidateUnorderedNonces(uint256,uint256)", 0, 0b11 << 6))
    assert _error(chain, sender, EXACT_PERMIT2_PROXY, _exact(revoked)) == "InvalidNonce()"


def _view_args(chain: DevChain, to: str, signature: str, *args: Any) -> int:
    return int(decode_output("(uint256)", chain.call(to, encode_call(signature, *args)))[0])
