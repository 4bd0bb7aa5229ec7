"""Property tests (hypothesis): header codec, payload parsing, money math, EIP-3009 digest and signatures."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402_middleware import ConfigurationError, MalformedPaymentError
from x402_middleware._headers import MAX_HEADER_BYTES, decode_header, encode_header
from x402_middleware.evm.eip3009 import (
    Authorization,
    address_of,
    recover_signer,
    sign_digest,
    to_checksum_address,
    transfer_digest,
)
from x402_middleware.models import parse_payment_payload
from x402_middleware.money import from_atomic, parse_usd, to_atomic
from x402_middleware.networks import find_network
from x402_middleware.schemes import find_scheme

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
# Local settings (not a global profile): eth_account's first call is slow, so no per-example deadline.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON without floats: x402 amounts and timestamps are strings or integers.
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
hex_str = st.binary(max_size=40).map(lambda b: "0x" + b.hex())
address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@SETTINGS
@given(
    st.binary(max_size=300)
    | st.text(max_size=300)
    | st.binary(max_size=300).map(b64)
    | json_values.map(lambda v: b64(json.dumps(v).encode()))
    | st.text(max_size=200).map(lambda t: b64(t.encode()))
)
def test_decode_header_raises_only_malformed_payment_error(value: Any) -> None:
    try:
        result = decode_header(value)
    except MalformedPaymentError:
        return
    assert isinstance(result, dict)


@SETTINGS
@given(json_objects)
def test_decode_header_round_trips_encode_header(obj: dict[str, Any]) -> None:
    encoded = encode_header(obj)
    assert encoded.isascii()
    if len(encoded) > MAX_HEADER_BYTES:
        with pytest.raises(MalformedPaymentError):
            decode_header(encoded)
    else:
        assert decode_header(encoded) == obj
        assert decode_header(encoded.rstrip("=")) == obj  # clients that strip the padding


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_decode_header_refuses_floats_unless_asked(number: float) -> None:
    encoded = b64(json.dumps({"amount": number}).encode())
    with pytest.raises(MalformedPaymentError):
        decode_header(encoded)
    assert decode_header(encoded, allow_floats=True) == {"amount": number}


def near_valid_payload() -> st.SearchStrategy[dict[str, Any]]:
    """Payment payloads whose every field is valid or arbitrary JSON, so parsing reaches its deepest checks."""

    def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return valid | json_values

    authorization = st.fixed_dictionaries(
        {
            "from": either(address),
            "to": either(address),
            "value": either(UINT256.map(str)),
            "validAfter": either(UINT256.map(str) | UINT256),
            "validBefore": either(UINT256.map(str)),
            "nonce": either(st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())),
        }
    )
    payload = st.fixed_dictionaries({"signature": either(hex_str), "authorization": either(authorization)})
    accepted = st.fixed_dictionaries({"scheme": either(st.just("exact")), "network": either(st.just("eip155:8453"))})
    return st.fixed_dictionaries(
        {
            "x402Version": either(st.sampled_from([1, 2])),
            "scheme": either(st.just("exact")),
            "network": either(st.just("base")),
            "accepted": either(accepted),
            "payload": either(payload),
        }
    )


@SETTINGS
@given(json_objects | near_valid_payload())
def test_parse_payment_payload_raises_only_malformed_payment_error(obj: dict[str, Any]) -> None:
    try:
        parsed = parse_payment_payload(obj)
    except MalformedPaymentError:
        return
    assert parsed.x402_version in (1, 2)
    if parsed.data is None:  # no scheme handles it here (an unknown network): it can match no requirement
        net = find_network(parsed.network)
        assert find_scheme(parsed.scheme, net.namespace if net else parsed.network.partition(":")[0]) is None
        return
    assert len(parsed.data.authorization.nonce) == 32
    assert 0 <= parsed.data.authorization.value < 2**256


@SETTINGS
@given(UINT256, st.integers(min_value=0, max_value=36))
def test_atomic_round_trip(n: int, decimals: int) -> None:
    assert to_atomic(from_atomic(n, decimals), decimals) == n


@SETTINGS
@given(UINT256, st.integers(min_value=0, max_value=36), st.integers(min_value=1, max_value=9))
def test_to_atomic_exact_refuses_sub_unit_amounts(n: int, decimals: int, digit: int) -> None:
    finer = Decimal(f"{n * 10 + digit}E-{decimals + 1}")  # n units and a tenth-unit more (exact: no context rounding)
    with pytest.raises(ConfigurationError, match="decimal places"):
        to_atomic(finer, decimals)
    assert to_atomic(finer, decimals, exact=False) == n  # truncation toward zero


@SETTINGS
@given(
    st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=8),
    st.sampled_from(["${}", "{}", " ${} USD", "{} USDC", "{}usd"]),
)
def test_parse_usd_returns_the_exact_decimal(amount: Decimal, template: str) -> None:
    parsed = parse_usd(template.format(format(amount, "f")))
    assert type(parsed) is Decimal and parsed == amount


@SETTINGS
@given(st.floats())
def test_parse_usd_rejects_floats(number: float) -> None:
    with pytest.raises(ConfigurationError, match="never a float"):
        parse_usd(number)  # type: ignore[arg-type]


@SETTINGS
@given(st.text(max_size=30) | st.integers() | st.decimals())
def test_parse_usd_returns_a_decimal_or_raises_configuration_error(value: Any) -> None:
    try:
        parsed = parse_usd(value)
    except ConfigurationError:
        return
    assert type(parsed) is Decimal and parsed.is_finite() and parsed >= 0


@SETTINGS
@given(
    address,
    address,
    UINT256,
    UINT256,
    UINT256,
    st.binary(min_size=32, max_size=32),
    st.text(max_size=20),
    st.text(max_size=8),
    UINT256,
    address,
)
def test_transfer_digest_equals_eth_account(
    frm: str,
    to: str,
    value: int,
    after: int,
    before: int,
    nonce: bytes,
    name: str,
    version: str,
    chain_id: int,
    contract: str,
) -> None:
    auth = Authorization(to_checksum_address(frm), to_checksum_address(to), value, after, before, nonce)
    ours = transfer_digest(auth, name=name, version=version, chain_id=chain_id, verifying_contract=contract)
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": n, "type": t}
                for n, t in (
                    ("from", "address"),
                    ("to", "address"),
                    ("value", "uint256"),
                    ("validAfter", "uint256"),
                    ("validBefore", "uint256"),
                    ("nonce", "bytes32"),
                )
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        "message": {
            "from": auth.from_address,
            "to": auth.to,
            "value": value,
            "validAfter": after,
            "validBefore": before,
            "nonce": nonce,
        },
    }
    assert ours == _hash_eip191_message(encode_typed_data(full_message=typed))


@SETTINGS
@given(st.integers(min_value=1, max_value=SECP256K1_N - 1), st.binary(min_size=32, max_size=32))
def test_sign_then_recover_gives_the_signer(secret: int, digest: bytes) -> None:
    key = secret.to_bytes(32, "big")
    signature = sign_digest(key, digest)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2  # low s, as the token requires
    assert recover_signer(digest, signature) == address_of(key) == Account.from_key(key).address
