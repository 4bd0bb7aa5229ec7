"""DevChain itself: placement at canonical addresses, EIP-712 domain, Multicall3Lite, wallets, snapshots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from tests._chain import TWA_VRS, sign_authorization
from x402_middleware.devchain import (
    BASE_SEPOLIA_USDC,
    BASE_USDC,
    MULTICALL3_ADDRESS,
    AnvilNotFoundError,
    AnvilStartError,
    DevChain,
    RPCError,
    _anvil,
    decode_output,
    encode_call,
    find_anvil,
)

EXPECTED = {
    "local": (31337, "USD Coin", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
    "base": (8453, "USD Coin", BASE_USDC),
    "base-sepolia": (84532, "USDC", BASE_SEPOLIA_USDC),
}


def _python_domain_separator(name: str, chain_id: int, contract: str) -> bytes:
    typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    fields = [typehash, keccak(text=name), keccak(text="2"), chain_id, contract]
    return keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"], fields))


def test_domain_separator_matches_python_for_each_placement(any_chain: DevChain) -> None:
    chain = any_chain
    chain_id, name, asset = EXPECTED[chain.target.key]
    assert (chain.chain_id, chain.token_name, chain.asset) == (chain_id, name, asset)
    assert chain.network == f"eip155:{chain_id}"
    assert int(chain.rpc("eth_chainId"), 16) == chain_id
    on_chain = chain.call(chain.asset, encode_call("DOMAIN_SEPARATOR()"))
    assert on_chain == _python_domain_separator(name, chain_id, asset)
    header = encode_typed_data(
        domain_data=chain.eip712_domain(),
        message_types={
            "CancelAuthorization": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
        },
        message_data={"authorizer": chain.pay_to, "nonce": b"\0" * 32},
    ).header
    assert on_chain == header


def test_multicall3lite_try_aggregate(any_chain: DevChain) -> None:
    chain = any_chain
    sig = "tryAggregate(bool,(address,bytes)[])"
    calls = [
        (chain.asset, encode_call("balanceOf(address)", chain.payer_addresses[0])),
        (chain.asset, encode_call("decimals()")),
        (chain.asset, encode_call("mint(address,uint256)", chain.pay_to, 1)),  # msg.sender is Multicall: reverts
    ]
    (results,) = decode_output("((bool,bytes)[])", chain.call(MULTICALL3_ADDRESS, encode_call(sig, False, calls)))
    (ok1, balance), (ok2, decimals), (ok3, error) = results
    assert (ok1, ok2, ok3) == (True, True, False)
    assert int.from_bytes(balance, "big") == chain.payer_balance and int.from_bytes(decimals, "big") == 6
    assert error[:4] == bytes.fromhex("08c379a0")
    with pytest.raises(RPCError) as info:
        chain.call(MULTICALL3_ADDRESS, encode_call(sig, True, calls))
    assert info.value.revert_reason == "Multicall3: call failed"


def test_wallets_are_funded(any_chain: DevChain) -> None:
    chain = any_chain
    assert len(chain.payer_keys) == 3 and len(chain.facilitator_keys) == 2
    for key, address in zip(chain.payer_keys, chain.payer_addresses, strict=True):
        assert Account.from_key(key).address == address
        assert chain.balance_of(address) == chain.payer_balance
        assert chain.rpc("eth_getBalance", address, "latest") == "0x0"
    for address in chain.facilitator_addresses:
        assert int(chain.rpc("eth_getBalance", address, "latest"), 16) == chain.facilitator_eth
    assert chain.balance_of(chain.pay_to) == 0
    info = chain.info()
    assert set(info) == {
        "rpc_url",
        "chain_id",
        "network",
        "asset",
        "token_name",
        "token_version",
        "payer_private_keys",
        "payer_addresses",
        "facilitator_private_keys",
        "pay_to",
        "permit2",
        "exact_permit2_proxy",
        "upto_permit2_proxy",
    }
    for address in chain.payer_addresses:  # dev mode: every payer has approved Permit2 for the maximum
        assert chain.allowance(address) == 2**256 - 1
    assert info["rpc_url"].startswith("http://127.0.0.1:")


def test_snapshot_revert_and_authorization_state(chain: DevChain) -> None:
    auth = sign_authorization(chain, chain.payer_keys[0], to=chain.pay_to, value=100)
    snapshot = chain.snapshot()
    chain.send(chain.facilitator_keys[0], chain.asset, auth.calldata(TWA_VRS))
    assert chain.authorization_state(auth.from_, "0x" + auth.nonce.hex())
    assert chain.balance_of(chain.pay_to) == 100
    chain.revert(snapshot)
    assert not chain.authorization_state(auth.from_, auth.nonce)
    assert chain.balance_of(chain.pay_to) == 0
    with pytest.raises(RuntimeError, match="already used"):
        chain.revert(snapshot)


def test_unknown_network_and_unstarted_chain() -> None:
    with pytest.raises(ValueError, match="base-sepolia"):
        DevChain("mainnet")
    chain = DevChain("local")
    with pytest.raises(RuntimeError, match="not started"):
        chain.balance_of(chain.pay_to)
    chain.stop()  # harmless before start


def test_stop_terminates_anvil() -> None:
    chain = DevChain("local", payers=0, facilitators=0).start()
    pid = chain.pid
    assert Path(f"/proc/{pid}").exists()
    chain.stop()
    chain.stop()
    assert not Path(f"/proc/{pid}").exists()


def test_find_anvil_order_and_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("X402_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(AnvilNotFoundError, match="not an executable"):
        find_anvil()
    monkeypatch.delenv("X402_ANVIL")
    assert find_anvil().endswith("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    monkeypatch.setattr(_anvil, "_REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilNotFoundError, match="npm ci"):
        find_anvil()


def test_anvil_that_exits_early_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\necho 'error: unexpected argument'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(AnvilStartError, match="(?s)exited with code 3.*unexpected argument"):
        DevChain("local", anvil=str(fake)).start()


def test_block_time_keeps_the_head_fresh_and_transactions_instant() -> None:
    """The dev tools' chains (``block_time``) mine while idle, so ``eth_call`` at ``latest`` sees a recent
    ``block.timestamp``; a transaction is still mined at once (automine beside interval mining)."""
    with DevChain("local", payers=1, facilitators=1, block_time=1) as chain:
        first = int(chain.rpc("eth_blockNumber"), 16)
        time.sleep(2.5)
        head = chain.rpc("eth_getBlockByNumber", "latest", False)
        assert int(head["number"], 16) >= first + 2 and int(head["timestamp"], 16) >= time.time() - 2
        started = time.monotonic()
        receipt = chain.send(chain.facilitator_keys[0], chain.pay_to, b"", value=1)
        assert int(receipt["status"], 16) == 1 and time.monotonic() - started < 0.9
