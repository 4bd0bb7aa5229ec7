"""The dev chain's blocking JSON-RPC client (a sync httpx shell over :mod:`x402_middleware.evm.jsonrpc`).

Requests, answers, :class:`~x402_middleware.evm.jsonrpc.RPCError` and transaction building live in
:mod:`x402_middleware.evm`, which the production facilitator shares; only the dev-chain conveniences are here.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from eth_account import Account

from ..evm.jsonrpc import build_request, parse_response
from ..evm.transactions import build_transaction, parse_receipt_status


class TransactionFailed(RuntimeError):
    """A transaction was mined with status 0 (reverted). ``receipt`` is the JSON-RPC receipt."""

    def __init__(self, tx_hash: str, receipt: dict[str, Any]) -> None:
        super().__init__(f"transaction {tx_hash} reverted (gasUsed {int(receipt['gasUsed'], 16)})")
        self.tx_hash = tx_hash
        self.receipt = receipt


class SyncRPC:
    """Blocking JSON-RPC client over one keep-alive ``httpx.Client``."""

    def __init__(self, url: str, *, client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.url = url
        self._owns_client = client is None
        if client is None:
            # The dev chain is plain HTTP on 127.0.0.1: skip loading the CA bundle (~25 ms per client) when
            # there is no TLS, and ignore proxy variables, which must not capture loopback traffic.
            client = httpx.Client(timeout=timeout, verify=not url.startswith("http://"), trust_env=False)
        self._client = client
        self._next_id = 0

    def __call__(self, method: str, *params: Any) -> Any:
        self._next_id += 1
        response = self._client.post(self.url, json=build_request(method, params, self._next_id))
        response.raise_for_status()
        return parse_response(method, response.json())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def send_transaction(
        self,
        private_key: str,
        chain_id: int,
        to: str | None,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Sign a type-2 transaction, send it and wait for the receipt.

        Without ``gas`` the node estimates it, so a reverting call raises :class:`RPCError` (with
        ``revert_reason``) before anything is sent; pass ``gas`` to get a mined failing transaction.
        With ``check`` a status-0 receipt raises :class:`TransactionFailed`.
        """
        account = Account.from_key(private_key)
        nonce = int(self("eth_getTransactionCount", account.address, "pending"), 16)
        call: dict[str, Any] = {"from": account.address, "data": "0x" + data.hex(), "value": hex(value)}
        if to is not None:
            call["to"] = to
        if gas is None:
            gas = int(self("eth_estimateGas", call), 16)
        gas_price = int(self("eth_gasPrice"), 16)
        priority = min(10**9, gas_price)
        tx = build_transaction(
            chain_id=chain_id,
            nonce=nonce,
            to=to,
            data=data,
            gas=gas,
            max_fee_per_gas=2 * gas_price + priority,
            max_priority_fee_per_gas=priority,
            value=value,
        )
        signed = account.sign_transaction(tx)
        tx_hash = self("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
        receipt = self.wait_for_receipt(tx_hash, timeout)
        if check and not parse_receipt_status(receipt):
            raise TransactionFailed(tx_hash, receipt)
        return receipt

    def wait_for_receipt(self, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            receipt = self("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
