"""Settle the journal's leftover rows (``claimed``, ``settling``, ``unknown``) against the chain (EVM ``exact``).

For each row of the node's chain: if the authorization's nonce is used (``authorizationState``) and a
``Transfer(payer → pay_to, amount)`` of the token is found (in the receipt of the row's transaction, else
in the transactions of the token's ``AuthorizationUsed(payer, nonce)`` logs), the row becomes ``settled``
with that transaction. If the nonce is unused and the chain's latest block is at or past ``valid_before``,
no transaction can move the money any more: ``failed`` ("expired unsettled"). Anything else is left as is.

    results = reconcile(journal, "https://sepolia.base.org")
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from .._exceptions import FacilitatorError
from ..evm.abi import decode_output, encode_call
from ..evm.eip3009 import keccak
from ..evm.jsonrpc import RPCError, build_request, parse_response
from ._entry import FAILED, PENDING, SETTLED, Journal, JournalEntry

__all__ = ["EXPIRED_UNSETTLED", "Reconciled", "reconcile"]

EXPIRED_UNSETTLED = "expired unsettled"
_TRANSFER = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
_AUTHORIZATION_USED = "0x" + keccak(b"AuthorizationUsed(address,bytes32)").hex()


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What reconciliation found for one row: ``state`` is the new one, or the unchanged one (``changed`` False)."""

    key: str
    state: str
    changed: bool
    transaction: str = ""
    note: str = ""


class _RPC:
    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url, self.client, self.ids = url, client, itertools.count(1)

    def __call__(self, method: str, *params: Any) -> Any:
        try:
            answer = self.client.post(self.url, json=build_request(method, params, next(self.ids)))
        except httpx.HTTPError as exc:
            raise FacilitatorError(f"the chain RPC at {self.url} is unreachable ({method}): {exc!r}") from exc
        if answer.status_code >= 500 or not answer.content:
            raise FacilitatorError(f"the chain RPC at {self.url} answered HTTP {answer.status_code} to {method}")
        return parse_response(method, answer.json())


def _topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def _has_transfer(receipt: Any, entry: JournalEntry) -> bool:
    if not isinstance(receipt, dict) or receipt.get("status") != "0x1":
        return False
    want = (_TRANSFER, _topic(entry.payer), _topic(entry.pay_to))
    for log in receipt.get("logs", []):
        topics = tuple(t.lower() for t in log.get("topics", [])[:3])
        if (
            log.get("address", "").lower() == entry.asset.lower()
            and topics == want
            and int(log.get("data", "0x0"), 16) == entry.amount
        ):
            return True
    return False


def reconcile(
    journal: Journal,
    rpc_url: str,
    *,
    from_block: int | str = "earliest",
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> list[Reconciled]:
    """Reconcile the rows left in ``claimed``/``settling``/``unknown`` of the chain behind ``rpc_url``.

    ``from_block`` bounds the ``AuthorizationUsed`` log search for rows without a transaction (public
    nodes cap ``eth_getLogs`` ranges: pass a block from before the oldest pending row). Rows of other
    networks or schemes are skipped. Raises :class:`FacilitatorError` when the node is unreachable.
    """
    own = client is None
    http = client if client is not None else httpx.Client(timeout=timeout)
    try:
        rpc = _RPC(rpc_url, http)
        chain = f"eip155:{int(rpc('eth_chainId'), 16)}"
        now = int(rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        start = hex(from_block) if isinstance(from_block, int) else from_block
        results = []
        for entry in journal.entries(*PENDING):
            if entry.network != chain or entry.scheme != "exact" or not entry.nonce:
                continue
            result = _one(rpc, entry, now, start)
            if result.changed:
                journal.mark_reconciled(entry.key, result.state, transaction=result.transaction, reason=result.note)
            results.append(result)
        return results
    finally:
        if own:
            http.close()


def _one(rpc: _RPC, entry: JournalEntry, now: int, from_block: str) -> Reconciled:
    nonce = bytes.fromhex(entry.nonce[2:])
    data = encode_call("authorizationState(address,bytes32)", entry.payer, nonce)
    raw = rpc("eth_call", {"to": entry.asset, "data": "0x" + data.hex()}, "latest")
    (used,) = decode_output("(bool)", bytes.fromhex(raw[2:]))
    if not used:
        if now >= entry.valid_before:
            return Reconciled(entry.key, FAILED, True, note=EXPIRED_UNSETTLED)
        return Reconciled(entry.key, entry.state, False, entry.transaction, "nonce unused, still valid")
    candidates = [entry.transaction] if entry.transaction else []
    try:
        logs = rpc(
            "eth_getLogs",
            {
                "address": entry.asset,
                "fromBlock": from_block,
                "toBlock": "latest",
                "topics": [_AUTHORIZATION_USED, _topic(entry.payer), entry.nonce.lower()],
            },
        )
    except RPCError:
        logs = []  # a range the node refuses: the known transaction may still tell
    candidates += [log["transactionHash"] for log in logs if log.get("transactionHash") not in candidates]
    for tx in candidates:
        if _has_transfer(rpc("eth_getTransactionReceipt", tx), entry):
            return Reconciled(entry.key, SETTLED, True, tx)
    return Reconciled(entry.key, entry.state, False, entry.transaction, "nonce used, no matching transfer found")
