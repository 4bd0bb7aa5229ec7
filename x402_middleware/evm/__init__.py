"""EVM chain code shared by the EVM schemes, the on-chain facilitator and the dev chain.

EIP-712 / EIP-3009 digests and signatures (:mod:`.eip3009`), EIP-2612 permits (:mod:`.eip2612`). Nothing outside this package and
``schemes/evm/`` names EVM specifics; ``devchain/`` builds on this package, never the other way round.
ABI calldata: function selectors, call encoding, return and ``Error(string)`` revert decoding (:mod:`.abi`).
JSON-RPC 2.0 requests and answers, :class:`~.jsonrpc.RPCError` (:mod:`.jsonrpc`; no I/O, any transport).
EIP-1559 transactions: building, fast signing over coincurve, receipt status (:mod:`.transactions`).
"""

from .eip3009 import address_of, keccak, to_checksum_address

__all__ = ["address_of", "keccak", "to_checksum_address"]
