"""SolanaFacilitator on the real Solana runtime (LiteSVM + SPL Token): money moves exactly once, or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.svm._tx import MEMO, SYSTEM, requirement_wire, transfer_tx
from x402_middleware.devchain.solana import SolanaDevChain
from x402_middleware.facilitator import SolanaFacilitator
from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload, parse_requirements

pytestmark = pytest.mark.anyio
AMOUNT = 12_345


@pytest.fixture
async def facilitator(sol: SolanaDevChain) -> AsyncIterator[SolanaFacilitator]:
    fac = SolanaFacilitator(sol.rpc_url, sol.fee_payer_secret_keys, network=sol.network)
    try:
        yield fac
    finally:
        await fac.aclose()


def _payment(
    sol: SolanaDevChain, tx: str, amount: int = AMOUNT, **extra: Any
) -> tuple[PaymentPayload, PaymentRequirements]:
    wire = requirement_wire(
        network=sol.network,
        mint=sol.mint,
        pay_to=sol.pay_to,
        amount=amount,
        fee_payer=sol.fee_payer_addresses[0],
        **extra,
    )
    payload = parse_payment_payload({"x402Version": 2, "accepted": wire, "payload": {"transaction": tx}})
    return payload, parse_requirements(wire, 2)


def _tx(sol: SolanaDevChain, payer: int = 0, **changes: Any) -> str:
    args: dict[str, Any] = {
        "payer": sol.payers[payer],
        "fee_payer": sol.fee_payer_addresses[0],
        "mint": sol.mint,
        "pay_to": sol.pay_to,
        "amount": AMOUNT,
        "blockhash": str(sol.svm.latest_blockhash()),  # type: ignore[union-attr]
    }
    args.update(changes)
    return transfer_tx(**args)


def _balances(sol: SolanaDevChain, payer: int = 0) -> tuple[int, int, int]:
    fee_payer = sol.fee_payer_addresses[0]
    return sol.token_balance(sol.payer_addresses[payer]), sol.token_balance(sol.pay_to), sol.lamports(fee_payer)


async def test_supported_lists_the_solana_kinds_with_the_fee_payer_and_signers(
    sol: SolanaDevChain, facilitator: SolanaFacilitator
) -> None:
    doc = await facilitator.supported()
    extra = {"feePayer": sol.fee_payer_addresses[0]}
    assert doc["kinds"] == [
        {"x402Version": 2, "scheme": "exact", "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "extra": extra},
        {"x402Version": 1, "scheme": "exact", "network": "solana", "extra": extra},
    ]
    assert doc["signers"] == {"solana:*": sol.fee_payer_addresses}


async def test_a_payment_settles_once_and_the_fee_payer_pays_the_fee(
    sol: SolanaDevChain, facilitator: SolanaFacilitator
) -> None:
    payload, requirements = _payment(sol, _tx(sol))
    before = _balances(sol)
    verified = await facilitator.verify(payload, requirements)
    assert verified.is_valid, verified
    assert _balances(sol) == before  # verify moves nothing
    result = await facilitator.settle(payload, requirements)
    assert result.success, result
    assert result.payer == sol.payer_addresses[0] and result.amount == AMOUNT
    status = await facilitator.rpc("getSignatureStatuses", [result.transaction])
    assert status["value"][0]["err"] is None and status["value"][0]["confirmationStatus"] == "finalized"
    payer_after, pay_to_after, lamports_after = _balances(sol)
    assert payer_after == before[0] - AMOUNT
    assert pay_to_after == before[1] + AMOUNT
    assert lamports_after == before[2] - 2 * 5000  # two signatures; the payer holds no SOL and pays none
    assert sol.lamports(sol.payer_addresses[0]) == 0

    again = await facilitator.settle(payload, requirements)
    assert (again.success, again.error_reason, again.transaction) == (False, "duplicate_settlement", result.transaction)
    assert _balances(sol) == (payer_after, pay_to_after, lamports_after)


async def test_concurrent_settles_of_one_payment_send_one_transaction(
    sol: SolanaDevChain, facilitator: SolanaFacilitator
) -> None:
    payload, requirements = _payment(sol, _tx(sol, payer=1))
    before = _balances(sol, payer=1)
    results = await asyncio.gather(*(facilitator.settle(payload, requirements) for _ in range(6)))
    assert sum(r.success for r in results) == 1
    assert {r.error_reason for r in results if not r.success} == {"duplicate_settlement"}
    assert len({r.transaction for r in results}) == 1
    after = _balances(sol, payer=1)
    assert (after[0], after[1]) == (before[0] - AMOUNT, before[1] + AMOUNT)
    assert after[2] == before[2] - 10_000


def _system_transfer(source: Pubkey, to: Pubkey, lamports: int) -> Instruction:
    return Instruction(
        SYSTEM,
        bytes([2, 0, 0, 0]) + lamports.to_bytes(8, "little"),
        [AccountMeta(source, True, True), AccountMeta(to, False, True)],
    )


def _refusals(sol: SolanaDevChain) -> dict[str, tuple[str, dict[str, Any], int]]:
    fee_payer = Pubkey.from_string(sol.fee_payer_addresses[0])
    fee_keypair = sol.fee_payers[0]
    stranger = Keypair()
    return {
        # name: (expected reason, transaction changes, required amount)
        "wrong destination": (
            "invalid_exact_svm_payload_recipient_mismatch",
            {"pay_to": str(stranger.pubkey())},
            AMOUNT,
        ),
        "smaller amount": ("invalid_exact_svm_payload_amount_mismatch", {"amount": AMOUNT - 1}, AMOUNT),
        "larger amount": ("invalid_exact_svm_payload_amount_mismatch", {"amount": AMOUNT + 1}, AMOUNT),
        "wrong mint": ("invalid_exact_svm_payload_mint_mismatch", {"mint": str(Keypair().pubkey())}, AMOUNT),
        "extra instruction": (
            "invalid_exact_svm_payload_unknown_fifth_instruction",
            {"extra": [_system_transfer(fee_payer, sol.payers[0].pubkey(), 10**9)]},
            AMOUNT,
        ),
        "fee payer as authority": (
            "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds",
            {"authority": fee_keypair, "signers": [fee_keypair]},
            AMOUNT,
        ),
        "fee payer in a memo's accounts": (
            "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds",
            {"extra": [Instruction(MEMO, b"hi", [AccountMeta(fee_payer, True, True)])]},
            AMOUNT,
        ),
        "compute price too high": (
            "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
            {"price": 5_000_001},
            AMOUNT,
        ),
        "not signed by the payer": ("invalid_exact_svm_payload_signature_invalid", {"signers": [stranger]}, AMOUNT),
        "more than the payer has": ("transaction_simulation_failed", {"amount": 10**15}, 10**15),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong destination",
        "smaller amount",
        "larger amount",
        "wrong mint",
        "extra instruction",
        "fee payer as authority",
        "fee payer in a memo's accounts",
        "compute price too high",
        "not signed by the payer",
        "more than the payer has",
    ],
)
async def test_a_bad_transaction_is_refused_with_its_reason_and_nothing_moves(
    sol: SolanaDevChain, facilitator: SolanaFacilitator, case: str
) -> None:
    sol.create_token_account(sol.fee_payer_addresses[0], 10**9)  # so the fee payer has tokens it could lose
    reason, changes, amount = _refusals(sol)[case]
    payload, requirements = _payment(sol, _tx(sol, payer=2, **changes), amount=amount)
    before = (*_balances(sol, payer=2), sol.token_balance(sol.fee_payer_addresses[0]))
    verified = await facilitator.verify(payload, requirements)
    assert (verified.is_valid, verified.invalid_reason) == (False, reason), verified
    settled = await facilitator.settle(payload, requirements)
    assert (settled.success, settled.error_reason, settled.transaction) == (False, reason, "")
    assert (*_balances(sol, payer=2), sol.token_balance(sol.fee_payer_addresses[0])) == before


async def test_a_fee_payer_not_its_own_is_refused(sol: SolanaDevChain, facilitator: SolanaFacilitator) -> None:
    other = Keypair()
    wire = requirement_wire(
        network=sol.network, mint=sol.mint, pay_to=sol.pay_to, amount=AMOUNT, fee_payer=str(other.pubkey())
    )
    tx = _tx(sol, fee_payer=str(other.pubkey()))
    payload = parse_payment_payload({"x402Version": 2, "accepted": wire, "payload": {"transaction": tx}})
    result = await facilitator.settle(payload, parse_requirements(wire, 2))
    assert result.error_reason == "fee_payer_not_managed_by_facilitator"


async def test_the_memo_must_be_the_requirements(sol: SolanaDevChain, facilitator: SolanaFacilitator) -> None:
    payload, requirements = _payment(sol, _tx(sol, memo=b"invoice-2"), memo="invoice-1")
    assert (await facilitator.verify(payload, requirements)).invalid_reason == "invalid_exact_svm_payload_memo_mismatch"
    payload, requirements = _payment(sol, _tx(sol, memo=b"invoice-1"), memo="invoice-1")
    assert (await facilitator.verify(payload, requirements)).is_valid


async def test_a_node_on_another_cluster_is_an_error_not_a_refusal(sol: SolanaDevChain) -> None:
    from x402_middleware import FacilitatorError

    fac = SolanaFacilitator(sol.rpc_url, sol.fee_payer_secret_keys, network="solana-devnet", any_asset=True)
    wire = requirement_wire(
        network="solana-devnet", mint=sol.mint, pay_to=sol.pay_to, amount=AMOUNT, fee_payer=sol.fee_payer_addresses[0]
    )
    payload = parse_payment_payload({"x402Version": 2, "accepted": wire, "payload": {"transaction": _tx(sol)}})
    try:
        with pytest.raises(FacilitatorError, match="genesis hash"):
            await fac.verify(payload, parse_requirements(wire, 2))
    finally:
        await fac.aclose()


async def test_an_unconfirmed_transaction_is_pending_and_a_later_settle_follows_it(
    sol: SolanaDevChain, facilitator: SolanaFacilitator
) -> None:
    """A node that has not confirmed yet (its status answer withheld): ``settlement_pending`` with the signature;
    settling the same payment again sends nothing new, reports the success once, then ``duplicate_settlement``."""
    payload, requirements = _payment(sol, _tx(sol, payer=1))
    before = _balances(sol, payer=1)
    methods = sol.rpc._methods
    real = methods["getSignatureStatuses"]
    methods["getSignatureStatuses"] = lambda params: {
        "context": {"slot": sol.rpc.slot},
        "value": [None] * len(params[0]),
    }
    facilitator.confirm_timeout = 0.05
    try:
        pending = await facilitator.settle(payload, requirements)
    finally:
        methods["getSignatureStatuses"] = real
    assert (pending.success, pending.error_reason) == (False, "settlement_pending")
    assert pending.transaction in sol.rpc.statuses  # sent, and the runtime ran it
    sends = sol.rpc.calls["sendTransaction"]
    followed = await facilitator.settle(payload, requirements)
    assert followed.success and followed.transaction == pending.transaction
    again = await facilitator.settle(payload, requirements)
    assert (again.success, again.error_reason) == (False, "duplicate_settlement")
    assert sol.rpc.calls["sendTransaction"] == sends  # nothing was sent again
    after = _balances(sol, payer=1)
    assert (before[0] - after[0], after[1] - before[1], before[2] - after[2]) == (AMOUNT, AMOUNT, 10_000)
