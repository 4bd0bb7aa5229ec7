"""TestUSDC's ERC-20, EIP-2612 and owner-only mint, on every emulated network where placement matters."""

from __future__ import annotations

from eth_account import Account

from tests._chain import PERMIT_VRS, latest_timestamp, revert_reason, sign_permit
from x402_middleware.devchain import DevChain, decode_output, encode_call

MAX = 2**256 - 1


def _view(chain: DevChain, signature: str, returns: str, *args: object) -> object:
    (value,) = decode_output(returns, chain.call(chain.asset, encode_call(signature, *args)))
    return value


def test_metadata(any_chain: DevChain) -> None:
    chain = any_chain
    assert _view(chain, "name()", "(string)") == chain.token_name
    assert _view(chain, "symbol()", "(string)") == "USDC"
    assert _view(chain, "version()", "(string)") == "2"
    assert _view(chain, "decimals()", "(uint8)") == 6
    assert str(_view(chain, "owner()", "(address)")).lower() == chain.deployer.lower()
    assert _view(chain, "totalSupply()", "(uint256)") == chain.payer_balance * len(chain.payer_keys)


def test_mint_only_by_owner(any_chain: DevChain) -> None:
    chain = any_chain
    data = encode_call("mint(address,uint256)", chain.pay_to, 5)
    assert revert_reason(chain, chain.facilitator_keys[0], chain.asset, data) == "TestUSDC: not owner"
    chain.mint(chain.pay_to, 5)  # the deployer, also at the canonical address (owner is an immutable)
    assert chain.balance_of(chain.pay_to) == 5


def test_transfer_approve_transfer_from(chain: DevChain) -> None:
    payer, spender = chain.payer_keys[0], chain.facilitator_keys[0]
    payer_address, spender_address = chain.payer_addresses[0], chain.facilitator_addresses[0]
    chain.rpc("anvil_setBalance", payer_address, hex(10**18))  # this test sends from the payer itself

    transfer = "transfer(address,uint256)"
    assert revert_reason(chain, payer, chain.asset, encode_call(transfer, chain.pay_to, chain.payer_balance + 1)) == (
        "ERC20: transfer amount exceeds balance"
    )
    assert revert_reason(chain, payer, chain.asset, encode_call(transfer, "0x" + "00" * 20, 1)) == (
        "ERC20: transfer to the zero address"
    )
    receipt = chain.send(payer, chain.asset, encode_call(transfer, chain.pay_to, 11))
    assert len(receipt["logs"]) == 1 and chain.balance_of(chain.pay_to) == 11

    transfer_from = "transferFrom(address,address,uint256)"
    chain.send(payer, chain.asset, encode_call("approve(address,uint256)", spender_address, 100))
    assert _view(chain, "allowance(address,address)", "(uint256)", payer_address, spender_address) == 100
    assert revert_reason(chain, spender, chain.asset, encode_call(transfer_from, payer_address, chain.pay_to, 101)) == (
        "ERC20: transfer amount exceeds allowance"
    )
    chain.send(spender, chain.asset, encode_call(transfer_from, payer_address, chain.pay_to, 40))
    assert _view(chain, "allowance(address,address)", "(uint256)", payer_address, spender_address) == 60

    chain.send(payer, chain.asset, encode_call("approve(address,uint256)", spender_address, MAX))
    chain.send(spender, chain.asset, encode_call(transfer_from, payer_address, chain.pay_to, 49))
    assert _view(chain, "allowance(address,address)", "(uint256)", payer_address, spender_address) == MAX
    assert chain.balance_of(chain.pay_to) == 100


def test_permit(any_chain: DevChain) -> None:
    chain = any_chain
    owner_key, relayer = chain.payer_keys[0], chain.facilitator_keys[0]
    owner, spender = chain.payer_addresses[0], chain.facilitator_addresses[1]
    deadline = latest_timestamp(chain) + 600
    assert _view(chain, "nonces(address)", "(uint256)", owner) == 0
    sig = sign_permit(chain, owner_key, spender=spender, value=1234, nonce=0, deadline=deadline)
    data = encode_call(PERMIT_VRS, owner, spender, 1234, deadline, sig.v, sig.r, sig.s)

    chain.send(relayer, chain.asset, data)
    assert _view(chain, "allowance(address,address)", "(uint256)", owner, spender) == 1234
    assert _view(chain, "nonces(address)", "(uint256)", owner) == 1
    # Replaying the same permit signs over a stale nonce.
    assert revert_reason(chain, relayer, chain.asset, data) == "EIP2612: invalid signature"

    expired = latest_timestamp(chain) - 1
    sig = sign_permit(chain, owner_key, spender=spender, value=1, nonce=1, deadline=expired)
    data = encode_call(PERMIT_VRS, owner, spender, 1, expired, sig.v, sig.r, sig.s)
    assert revert_reason(chain, relayer, chain.asset, data) == "FiatTokenV2: permit is expired"

    forged = sign_permit(chain, chain.payer_keys[1], spender=spender, value=1, nonce=1, deadline=MAX)
    data = encode_call(PERMIT_VRS, owner, spender, 1, MAX, forged.v, forged.r, forged.s)
    assert revert_reason(chain, relayer, chain.asset, data) == "EIP2612: invalid signature"
    bytes_overload = "permit(address,address,uint256,uint256,bytes)"
    good = sign_permit(chain, owner_key, spender=spender, value=7, nonce=1, deadline=MAX)
    chain.send(relayer, chain.asset, encode_call(bytes_overload, owner, spender, 7, MAX, good.signature))
    assert _view(chain, "allowance(address,address)", "(uint256)", owner, Account.from_key(relayer).address) == 0
    assert _view(chain, "allowance(address,address)", "(uint256)", owner, spender) == 7
