"""The Solana dev chain: LiteSVM behind JSON-RPC, started in well under a second, serving exactly its listed methods."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devchain.test_devchain_cli import _read_line
from tests.svm._tx import transfer_tx
from x402_middleware.devchain._svm_rpc import SVM_RPC_METHODS
from x402_middleware.devchain.solana import SolanaDevChain
from x402_middleware.svm import associated_token_address

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rpc(sol: SolanaDevChain, method: str, *params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.post(
        sol.rpc_url, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}
    ).json()
    assert answer["id"] == 7
    return answer


def test_it_starts_in_well_under_a_second() -> None:
    started = time.perf_counter()
    with SolanaDevChain(payers=3) as chain:
        elapsed = time.perf_counter() - started
        assert (
            httpx.post(chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"}).json()["result"] == "ok"
        )
    assert chain.timings["ready_ms"] < 300 and elapsed < 0.5, (chain.timings, elapsed)


def test_the_mint_sits_at_the_canonical_address_with_6_decimals(sol: SolanaDevChain) -> None:
    info = _rpc(sol, "getAccountInfo", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", {"encoding": "base64"})["result"]
    data = base64.b64decode(info["value"]["data"][0])
    assert info["value"]["owner"] == "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
    assert len(data) == 82 and data[44] == 6 and data[45] == 1  # decimals, is_initialized
    ata = str(associated_token_address(sol.payer_addresses[0], sol.mint))
    balance = _rpc(sol, "getTokenAccountBalance", ata)["result"]["value"]
    assert balance["decimals"] == 6 and int(balance["amount"]) == sol.token_balance(sol.payer_addresses[0]) > 0
    assert _rpc(sol, "getGenesisHash")["result"].startswith("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")


def test_anything_not_served_is_a_json_rpc_error(sol: SolanaDevChain) -> None:
    assert _rpc(sol, "getProgramAccounts", sol.mint)["error"]["code"] == -32601
    assert _rpc(sol, "requestAirdrop", sol.pay_to, 10**9)["error"]["code"] == -32601
    parsed = _rpc(sol, "getAccountInfo", sol.mint, {"encoding": "jsonParsed"})
    assert parsed["error"]["code"] == -32602  # an encoding it does not serve: refused, never a different shape
    assert _rpc(sol, "getBalance", "not-a-key")["error"]["code"] == -32602
    batch = httpx.post(
        sol.rpc_url,
        json=[{"jsonrpc": "2.0", "id": 1, "method": "getSlot"}, {"jsonrpc": "2.0", "id": 2, "method": "nope"}],
    ).json()
    assert [("result" in a, "error" in a) for a in batch] == [(True, False), (False, True)]
    assert set(SVM_RPC_METHODS) == set(sol.rpc._methods)  # the documented list is the served one


def test_send_preflights_and_a_resend_is_already_processed(sol: SolanaDevChain) -> None:
    from solders.transaction import VersionedTransaction

    from x402_middleware.svm import co_sign, encode_transaction

    blockhash = _rpc(sol, "getLatestBlockhash")["result"]["value"]["blockhash"]
    fee_payer = sol.fee_payers[0]

    def signed(amount: int) -> str:
        raw = transfer_tx(payer=sol.payers[0], fee_payer=str(fee_payer.pubkey()), mint=sol.mint, pay_to=sol.pay_to,
                          amount=amount, blockhash=blockhash)  # fmt: skip
        return encode_transaction(co_sign(VersionedTransaction.from_bytes(base64.b64decode(raw)), fee_payer))

    too_much = _rpc(sol, "sendTransaction", signed(10**15), {"encoding": "base64"})["error"]
    assert too_much["code"] == -32002 and "custom program error: 0x1" in too_much["message"]
    assert any("insufficient funds" in line for line in too_much["data"]["logs"])
    simulated = _rpc(sol, "simulateTransaction", signed(10**15), {"encoding": "base64", "sigVerify": True})
    assert simulated["result"]["value"]["err"] == {"InstructionError": [2, {"Custom": 1}]}

    good = signed(5)
    signature = _rpc(sol, "sendTransaction", good, {"encoding": "base64"})["result"]
    status = _rpc(sol, "getSignatureStatuses", [signature])["result"]["value"][0]
    assert status["err"] is None and status["confirmationStatus"] == "finalized"
    again = _rpc(sol, "sendTransaction", good, {"encoding": "base64", "skipPreflight": True})["error"]
    assert again["code"] == -32002 and "already been processed" in again["message"]
    unknown = "1" * 64
    assert _rpc(sol, "getSignatureStatuses", [unknown])["result"]["value"] == [None]


def test_cli_solana_prints_one_json_line_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "x402_middleware.devchain", "--solana", "--payers", "2"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        info = json.loads(_read_line(proc.stdout, 30))
        assert info["solana_network"] == "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
        assert info["mint"] == "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        assert len(info["solana_payer_secret_keys"]) == 2 and len(info["solana_fee_payer_secret_keys"]) == 1
        ata = str(associated_token_address(info["solana_payer_addresses"][1], info["mint"]))
        answer = httpx.post(
            info["solana_rpc_url"],
            json={"jsonrpc": "2.0", "id": 1, "method": "getTokenAccountBalance", "params": [ata]},
        ).json()
        assert answer["result"]["value"]["amount"] == "1000000000"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


@pytest.mark.parametrize("network", ["solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"])
def test_it_can_emulate_devnet(network: str) -> None:
    with SolanaDevChain(network, payers=1) as chain:
        assert chain.mint == "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
        assert chain.token_balance(chain.payer_addresses[0]) == 1_000_000_000
