"""Settle the journal's leftover rows (``claimed``, ``settling``, ``unknown``) against the chain (EVM ``exact``).

For each row of the node's chain: if the authorization's nonce is used (``authorizationState``) and a
``Transfer(payer → pay_to, amount)`` of the token is found (in the receipt of the row's transaction, else
in the transactions of the token's ``AuthorizationUsed(payer, nonce)`` logs), the row becomes ``settled``
with that transaction; if the logs were read and none of them moved the money to us, the nonce was spent
elsewhere: ``failed`` ("nonce used by another transfer"). If the nonce is unused and the chain's latest
block is at or past ``valid_before``, no transaction can move the money any more: ``failed`` ("expired
unsettled"). Anything else is left as is.

    results = reconcile(journal, "https://sepolia.base.org")
    reconciler = Reconciler(journal, "https://sepolia.base.org", interval=60).start()  # at start-up, then every 60 s
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from .._exceptions import FacilitatorError
from ..evm.abi import decode_output, encode_call
from ..evm.eip3009 import keccak
from ..evm.jsonrpc import RPCError, build_request, parse_response
from ._entry import FAILED, PENDING, SETTLED, Journal, JournalEntry

__all__ = ["EXPIRED_UNSETTLED", "USED_ELSEWHERE", "Reconciled", "Reconciler", "reconcile"]

logger = logging.getLogger("x402_middleware.journal")

EXPIRED_UNSETTLED = "expired unsettled"
USED_ELSEWHERE = "nonce used by another transfer"
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
        logs = None  # a range the node refuses: the known transaction may still tell
    candidates += [log["transactionHash"] for log in logs or () if log.get("transactionHash") not in candidates]
    for tx in candidates:
        if _has_transfer(rpc("eth_getTransactionReceipt", tx), entry):
            return Reconciled(entry.key, SETTLED, True, tx)
    if logs:  # the authorization was used, by transactions none of which paid us
        return Reconciled(entry.key, FAILED, True, note=USED_ELSEWHERE)
    return Reconciled(entry.key, entry.state, False, entry.transaction, "nonce used, no matching transfer found")


class Reconciler:
    """Reconciles a journal at start-up and then every ``interval`` seconds, in a daemon thread::

        reconciler = Reconciler(journal, rpc_url, interval=60).start()   # the first pass runs before start() returns
        ...
        reconciler.stop()

    A pass that cannot reach the node is logged and tried again at the next interval.
    """

    def __init__(
        self, journal: Journal, rpc_url: str, *, interval: float = 60.0, from_block: int | str = "earliest"
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.journal, self.rpc_url, self.interval, self.from_block = journal, rpc_url, interval, from_block
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[Reconciled]:
        """One pass; the rows it changed are logged."""
        try:
            results = reconcile(self.journal, self.rpc_url, from_block=self.from_block)
        except FacilitatorError as exc:
            logger.warning("x402: journal reconciliation skipped, the node is unreachable: %s", exc)
            return []
        for result in results:
            if result.changed:
                logger.info("x402: reconciled %s -> %s %s%s", result.key, result.state, result.transaction, result.note)
        return results

    def start(self) -> Reconciler:
        self.run_once()
        self._thread = threading.Thread(target=self._loop, name="x402-journal-reconciler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 30)
