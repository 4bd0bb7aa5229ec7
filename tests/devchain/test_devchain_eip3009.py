"""TestUSDC's EIP-3009 surface against a real anvil, signed with eth-account's generic EIP-712 code."""

from __future__ import annotations

import pytest
from eth_account import Account

from tests._chain import (
    CANCEL_BYTES,
    CANCEL_VRS,
    RWA_BYTES,
    RWA_VRS,
    TWA_BYTES,
    TWA_VRS,
    Signed,
    latest_timestamp,
    revert_reason,
    sign_authorization,
    sign_cancel,
)
from x402_middleware.devchain import DevChain, RPCError, encode_call, selector

USED = "FiatTokenV2: authorization is used or canceled"
INVALID = "FiatTokenV2: invalid signature"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def test_selectors_match_real_usdc() -> None:
    assert selector(TWA_VRS).hex() == "e3ee160e"
    assert selector(TWA_BYTES).hex() == "cf092995"
    assert selector("authorizationState(address,bytes32)").hex() == "e94a0102"
    assert selector(RWA_VRS).hex() == "ef55bec6"
    assert selector(CANCEL_VRS).hex() == "5a049a70"


@pytest.mark.parametrize("function", [TWA_VRS, TWA_BYTES])
def test_transfer_with_authorization_moves_exact_amounts(any_chain: DevChain, function: str) -> None:
    chain = any_chain
    payer, relayer = chain.payer_keys[0], chain.facilitator_keys[0]
    payer_address = Account.from_key(payer).address
    before = chain.balance_of(payer_address), chain.balance_of(chain.pay_to)
    auth = sign_authorization(chain, payer, to=chain.pay_to, value=1_500_000)
    assert not chain.authorization_state(payer_address, auth.nonce)

    receipt = chain.send(relayer, chain.asset, auth.calldata(function))

    assert int(receipt["status"], 16) == 1
    assert chain.balance_of(payer_address) == before[0] - 1_500_000
    assert chain.balance_of(chain.pay_to) == before[1] + 1_500_000
    assert chain.authorization_state(payer_address, auth.nonce)
    assert chain.rpc("eth_getBalance", payer_address, "latest") == "0x0"  # the payer never needs ETH
    used, transfer = receipt["logs"]
    assert used["topics"][2] == "0x" + auth.nonce.hex()  # AuthorizationUsed(authorizer, nonce)
    assert transfer["topics"][0] == TRANSFER_TOPIC and int(transfer["data"], 16) == 1_500_000


def test_replay_is_refused_in_simulation_and_on_chain(chain: DevChain) -> None:
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=10)
    relayer = chain.facilitator_keys[0]
    chain.send(relayer, chain.asset, auth.calldata(TWA_VRS))

    for function in (TWA_VRS, TWA_BYTES):
        assert revert_reason(chain, relayer, chain.asset, auth.calldata(function)) == USED
        with pytest.raises(RPCError) as info:
            chain.call(chain.asset, auth.calldata(function))
        assert info.value.code == 3 and info.value.message == f"execution reverted: {USED}"
    # Forced through with explicit gas, the replay is mined and fails.
    receipt = chain.send(relayer, chain.asset, auth.calldata(TWA_VRS), gas=100_000, check=False)
    assert int(receipt["status"], 16) == 0


def test_expired_and_not_yet_valid(chain: DevChain) -> None:
    now = latest_timestamp(chain)
    relayer = chain.facilitator_keys[0]
    expired = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=1, valid_before=now - 1)
    early = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=1, valid_after=now + 3600)
    for function in (TWA_VRS, TWA_BYTES):
        assert revert_reason(chain, relayer, chain.asset, expired.calldata(function)) == (
            "FiatTokenV2: authorization is expired"
        )
        assert revert_reason(chain, relayer, chain.asset, early.calldata(function)) == (
            "FiatTokenV2: authorization is not yet valid"
        )


def test_time_checks_come_before_the_nonce_check(chain: DevChain) -> None:
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=1)
    chain.send(chain.facilitator_keys[0], chain.asset, auth.calldata())
    late = sign_authorization(
        chain, chain.payer_keys[0], to=chain.pay_to, value=1, nonce=auth.nonce, valid_before=latest_timestamp(chain) - 1
    )
    assert revert_reason(chain, chain.facilitator_keys[0], chain.asset, late.calldata()) == (
        "FiatTokenV2: authorization is expired"
    )


def test_wrong_signer_wrong_domain_and_tampered_fields(chain: DevChain) -> None:
    relayer = chain.facilitator_keys[0]
    payer_address = chain.payer_addresses[0]
    forged = sign_authorization(chain, chain.payer_keys[1], from_=payer_address, to=chain.pay_to, value=5)
    wrong_name = sign_authorization(
        chain, chain.payer_keys[0], to=chain.pay_to, value=5, domain={**chain.eip712_domain(), "name": "USDC Coin"}
    )
    wrong_chain = sign_authorization(
        chain, chain.payer_keys[0], to=chain.pay_to, value=5, domain={**chain.eip712_domain(), "chainId": 1}
    )
    for auth in (forged, wrong_name, wrong_chain):
        for function in (TWA_VRS, TWA_BYTES):
            assert revert_reason(chain, relayer, chain.asset, auth.calldata(function)) == INVALID
    good = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=5)
    tampered = encode_call(TWA_VRS, *good.fields[:2], 6, *good.fields[3:], good.sig.v, good.sig.r, good.sig.s)
    assert revert_reason(chain, relayer, chain.asset, tampered) == INVALID
    assert chain.balance_of(chain.pay_to) == 0


def test_high_s_twin_is_rejected(chain: DevChain) -> None:
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=7)
    twin = auth.sig.high_s()
    for function in (TWA_VRS, TWA_BYTES):
        assert revert_reason(chain, chain.facilitator_keys[0], chain.asset, auth.calldata(function, twin)) == (
            "ECRecover: invalid signature 's' value"
        )
    assert not chain.authorization_state(auth.from_, auth.nonce)


def test_signature_shape_checks(chain: DevChain) -> None:
    relayer = chain.facilitator_keys[0]
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=3)
    bad_v = Signed(29, auth.sig.r, auth.sig.s)
    assert revert_reason(chain, relayer, chain.asset, auth.calldata(TWA_VRS, bad_v)) == (
        "ECRecover: invalid signature 'v' value"
    )
    short = encode_call(TWA_BYTES, *auth.fields, auth.sig.signature[:64])
    assert revert_reason(chain, relayer, chain.asset, short) == "ECRecover: invalid signature length"
    # Recovery ids 0/1 are accepted as 27/28.
    chain.send(relayer, chain.asset, auth.calldata(TWA_BYTES, Signed(auth.sig.v - 27, auth.sig.r, auth.sig.s)))
    assert chain.balance_of(chain.pay_to) == 3


@pytest.mark.parametrize("function", [RWA_VRS, RWA_BYTES])
def test_receive_with_authorization_only_by_the_payee(chain: DevChain, function: str) -> None:
    payee_key = chain.pay_to_key
    chain.rpc("anvil_setBalance", chain.pay_to, hex(10**18))
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=42, primary="ReceiveWithAuthorization")
    assert revert_reason(chain, chain.facilitator_keys[0], chain.asset, auth.calldata(function)) == (
        "FiatTokenV2: caller must be the payee"
    )
    # A TransferWithAuthorization signature is not a ReceiveWithAuthorization one (different typehash).
    transfer_auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=42)
    assert revert_reason(chain, payee_key, chain.asset, transfer_auth.calldata(function)) == INVALID

    chain.send(payee_key, chain.asset, auth.calldata(function))
    assert chain.balance_of(chain.pay_to) == 42
    assert chain.authorization_state(auth.from_, auth.nonce)
    assert revert_reason(chain, payee_key, chain.asset, auth.calldata(function)) == USED


@pytest.mark.parametrize("function", [CANCEL_VRS, CANCEL_BYTES])
def test_cancel_authorization(chain: DevChain, function: str) -> None:
    relayer, payer = chain.facilitator_keys[0], chain.payer_keys[0]
    auth = sign_authorization(chain, payer, to=chain.pay_to, value=9)
    forged = sign_cancel(chain, chain.payer_keys[1], auth.from_, auth.nonce)
    cancel = sign_cancel(chain, payer, auth.from_, auth.nonce)

    def calldata(sig: Signed) -> bytes:
        tail = (sig.signature,) if function == CANCEL_BYTES else (sig.v, sig.r, sig.s)
        return encode_call(function, auth.from_, auth.nonce, *tail)

    assert revert_reason(chain, relayer, chain.asset, calldata(forged)) == INVALID
    receipt = chain.send(relayer, chain.asset, calldata(cancel))
    (log,) = receipt["logs"]
    assert log["topics"][2] == "0x" + auth.nonce.hex()  # AuthorizationCanceled(authorizer, nonce)
    assert chain.authorization_state(auth.from_, auth.nonce)
    assert revert_reason(chain, relayer, chain.asset, auth.calldata()) == USED
    assert revert_reason(chain, relayer, chain.asset, calldata(cancel)) == USED


def test_erc1271_contract_signer(chain: DevChain) -> None:
    # Hand-assembled wallets: one answers isValidSignature with the magic value for anything, one with zero.
    accept = "0x631626ba7e60e01b60005260206000f3"  # PUSH4 magic, PUSH1 224, SHL, MSTORE @0, RETURN 32 bytes
    reject = "0x60206000f3"  # RETURN 32 zero bytes
    good_wallet, bad_wallet = "0x" + "12" * 20, "0x" + "34" * 20
    chain.rpc("anvil_setCode", good_wallet, accept)
    chain.rpc("anvil_setCode", bad_wallet, reject)
    relayer = chain.facilitator_keys[0]
    for wallet in (good_wallet, bad_wallet):
        chain.mint(wallet, 100)
    ok = encode_call(TWA_BYTES, good_wallet, chain.pay_to, 60, 0, 2**48, b"\x01" * 32, b"any wallet-specific proof")
    chain.send(relayer, chain.asset, ok)
    assert chain.balance_of(chain.pay_to) == 60
    refused = encode_call(TWA_BYTES, bad_wallet, chain.pay_to, 60, 0, 2**48, b"\x01" * 32, b"\x00" * 65)
    assert revert_reason(chain, relayer, chain.asset, refused) == INVALID


def test_insufficient_balance_message(chain: DevChain) -> None:
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=chain.payer_balance + 1)
    assert revert_reason(chain, chain.facilitator_keys[0], chain.asset, auth.calldata()) == (
        "ERC20: transfer amount exceeds balance"
    )
