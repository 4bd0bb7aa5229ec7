"""Ethereum JSON-RPC 2.0 requests and answers, without I/O.

:func:`build_request` and :func:`parse_response` do no I/O, so any transport can reuse them unchanged
(the httpx "auth flows do no I/O" pattern, style R10): the facilitator's async batching client and the
dev chain's blocking one both do.

Example::

    request = build_request("eth_chainId", [], request_id=1)   # POST this as JSON to the node
    chain_id = int(parse_response("eth_chainId", answer_json), 16)   # or RPCError
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .abi import decode_revert_reason

__all__ = ["RPCError", "build_request", "parse_response"]

_EXECUTION_REVERTED = "execution reverted: "


class RPCError(Exception):
    """A JSON-RPC error answer. ``revert_reason`` holds the ``Error(string)`` text of a contract revert."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data

    @property
    def revert_reason(self) -> str | None:
        reason = decode_revert_reason(self.data) if isinstance(self.data, str) else None
        if reason is None and self.message.startswith(_EXECUTION_REVERTED):
            reason = self.message[len(_EXECUTION_REVERTED) :]
        return reason


def build_request(method: str, params: Sequence[Any], request_id: int) -> dict[str, Any]:
    """The JSON-RPC request object: ``{"jsonrpc": "2.0", "id": request_id, "method": method, "params": [...]}``."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


def parse_response(method: str, payload: Any) -> Any:
    """Return the ``result`` of a JSON-RPC answer, or raise :class:`RPCError`."""
    if not isinstance(payload, dict):
        raise RPCError(method, -32700, f"malformed JSON-RPC answer: {payload!r:.200}")
    error = payload.get("error")
    if error is not None:
        raise RPCError(method, int(error.get("code", 0)), str(error.get("message", "")), error.get("data"))
    if "result" not in payload:
        raise RPCError(method, -32700, f"JSON-RPC answer without result: {payload!r:.200}")
    return payload["result"]
