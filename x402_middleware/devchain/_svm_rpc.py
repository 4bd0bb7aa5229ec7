"""Solana JSON-RPC over HTTP for a LiteSVM runtime: exactly the methods x402 clients and facilitators call.

Served (Solana JSON-RPC 2.0 shapes; ``context.slot`` in every ``{context, value}`` answer):

==============================  ===============================================================================
``getLatestBlockhash``          the runtime's blockhash, ``lastValidBlockHeight`` = block height + 150
``isBlockhashValid``            whether a blockhash is the runtime's current one
``getAccountInfo``              ``encoding`` ``base64`` (the default here) or ``base58``; ``null`` for no account
``getMultipleAccounts``         the same, for several accounts
``getBalance``                  lamports
``getTokenAccountBalance``      an SPL token account's ``amount``, ``decimals``, ``uiAmountString``
``getMinimumBalanceForRentExemption``  lamports for a data size
``getFeeForMessage``            5,000 lamports a signature (no priority fee: the clients set 1 µlamport/CU)
``simulateTransaction``         base64 (or base58) transaction; ``sigVerify`` and ``replaceRecentBlockhash``
``sendTransaction``             preflight simulation unless ``skipPreflight``; returns the signature
``getSignatureStatuses``        ``finalized`` for every processed transaction (the runtime runs it at once)
``getSlot``, ``getBlockHeight``, ``getEpochInfo``, ``getHealth``, ``getVersion``, ``getGenesisHash``
==============================  ===============================================================================

Which methods real clients call was found by running them against this server (``tests/svm/``): the
official Python client (solana-py) calls ``getAccountInfo`` (the mint's owner program and decimals) and
``getLatestBlockhash``; ``@x402/svm`` 2.27.0 the same through ``@solana/kit``; the facilitators
``simulateTransaction``, ``sendTransaction`` and ``getSignatureStatuses``. Any other method answers JSON-RPC
error -32601, and any unsupported option (``jsonParsed``, ``base64+zstd``, ``dataSlice``) -32602: never a
wrong result. Batches (a JSON array of requests) are answered with an array.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.state import Mint, TokenAccount
from solders.transaction import VersionedTransaction

from ..svm import TOKEN_2022_PROGRAM, TOKEN_PROGRAM

__all__ = ["SVM_RPC_METHODS", "SvmRPCServer"]

# Real genesis hashes: the CAIP-2 reference of a Solana network is the first 32 characters of its hash.
GENESIS_HASHES = {
    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
    "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z": "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY",
}
LAMPORTS_PER_SIGNATURE = 5000
_BLOCKHASH_SLOTS = 150
_MAX_BODY = 1 << 20


class RPCFailure(Exception):
    """A JSON-RPC error answer (``code``, ``message``, optional ``data``)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _invalid(message: str) -> RPCFailure:
    return RPCFailure(-32602, f"Invalid params: {message}")


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except (TypeError, ValueError):
        raise _invalid(f"{value!r} is not a base58 public key") from None


def _config(params: Sequence[Any], index: int) -> dict[str, Any]:
    config = params[index] if len(params) > index else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise _invalid("the configuration must be an object")
    return config


class SvmRPCServer:
    """A threaded HTTP JSON-RPC server for ``svm`` on ``127.0.0.1`` (port chosen by the kernel by default).

    Calls into the runtime are serialised by one lock (LiteSVM is one in-memory bank). ``lock`` is shared
    with the dev chain so that its own account edits never interleave with a transaction::

        server = SvmRPCServer(svm, network="solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", lock=lock).start()
        print(server.url)
        server.stop()
    """

    def __init__(
        self, svm: LiteSVM, *, network: str, lock: threading.RLock, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.svm = svm
        self.network = network
        self.lock = lock
        self.slot = 1
        self.statuses: dict[str, tuple[int, Any]] = {}  # signature -> (slot, JSON err or None)
        self.calls: dict[str, int] = {}  # method -> times called (tests read which methods clients use)
        self._methods: dict[str, Callable[[Sequence[Any]], Any]] = {
            "getLatestBlockhash": self._latest_blockhash,
            "isBlockhashValid": self._blockhash_valid,
            "getAccountInfo": self._account_info,
            "getMultipleAccounts": self._multiple_accounts,
            "getBalance": self._balance,
            "getTokenAccountBalance": self._token_balance,
            "getMinimumBalanceForRentExemption": self._rent,
            "getFeeForMessage": self._fee_for_message,
            "simulateTransaction": self._simulate,
            "sendTransaction": self._send,
            "getSignatureStatuses": self._signature_statuses,
            "getSlot": lambda params: self.slot,
            "getBlockHeight": lambda params: self.slot,
            "getEpochInfo": self._epoch_info,
            "getHealth": lambda params: "ok",
            "getVersion": lambda params: {"solana-core": "2.2.0-litesvm", "feature-set": 0},
            "getGenesisHash": lambda params: GENESIS_HASHES.get(network, network.partition(":")[2]),
        }
        handler = _handler(self)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SvmRPCServer:
        # A short poll interval: shutdown() waits for the loop's next poll (0.5 s by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="svm-rpc", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- dispatch ------------------------------------------------------------------------------------
    def answer(self, request: Any) -> dict[str, Any]:
        """The JSON-RPC response object for one request object."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
                raise RPCFailure(-32600, "Invalid request")
            method, params = request.get("method"), request.get("params", [])
            if not isinstance(params, list):
                raise _invalid("params must be an array")
            handler = self._methods.get(method) if isinstance(method, str) else None
            if handler is None or not isinstance(method, str):
                raise RPCFailure(-32601, f"Method not found: {method!r} is not served by this local Solana runtime")
            self.calls[method] = self.calls.get(method, 0) + 1
            with self.lock:
                result = handler(params)
            return {"jsonrpc": "2.0", "result": result, "id": request_id}
        except RPCFailure as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return {"jsonrpc": "2.0", "error": error, "id": request_id}
        except Exception as exc:  # noqa: BLE001 - a bug here must answer an error, not drop the connection
            message = f"Internal error: {type(exc).__name__}: {exc}"
            return {"jsonrpc": "2.0", "error": {"code": -32603, "message": message}, "id": request_id}

    def _context(self, value: Any) -> dict[str, Any]:
        return {"context": {"apiVersion": "2.2.0", "slot": self.slot}, "value": value}

    # -- reads -----------------------------------------------------------------------------------------
    def _latest_blockhash(self, params: Sequence[Any]) -> Any:
        return self._context(
            {"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": self.slot + _BLOCKHASH_SLOTS}
        )

    def _blockhash_valid(self, params: Sequence[Any]) -> Any:
        if not params or not isinstance(params[0], str):
            raise _invalid("expected a blockhash")
        return self._context(params[0] == str(self.svm.latest_blockhash()))

    def _encoded_account(self, address: Pubkey, config: dict[str, Any]) -> Any:
        encoding = config.get("encoding", "base64")
        if encoding not in ("base64", "base58"):
            raise _invalid(f"encoding {encoding!r} is not served here (use base64)")
        window = config.get("dataSlice")
        if window is not None and not (
            isinstance(window, dict) and type(window.get("offset")) is int and type(window.get("length")) is int
        ):
            raise _invalid("dataSlice must be {offset, length}")
        account = self.svm.get_account(address)
        if account is None:
            return None
        data = bytes(account.data)
        space = len(data)
        if window is not None:
            data = data[window["offset"] : window["offset"] + window["length"]]
        if encoding == "base64":
            encoded = [base64.b64encode(data).decode("ascii"), "base64"]
        else:
            if len(data) > 128:  # the node's own limit for base58 account data
                raise _invalid("base58 is only served for account data of at most 128 bytes; use base64")
            encoded = [_b58encode(data), "base58"]
        return {
            "data": encoded,
            "executable": account.executable,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": 18446744073709551615,
            "space": space,
        }

    def _account_info(self, params: Sequence[Any]) -> Any:
        if not params:
            raise _invalid("expected a public key")
        return self._context(self._encoded_account(_pubkey(params[0]), _config(params, 1)))

    def _multiple_accounts(self, params: Sequence[Any]) -> Any:
        if not params or not isinstance(params[0], list) or len(params[0]) > 100:
            raise _invalid("expected an array of at most 100 public keys")
        config = _config(params, 1)
        return self._context([self._encoded_account(_pubkey(k), config) for k in params[0]])

    def _balance(self, params: Sequence[Any]) -> Any:
        if not params:
            raise _invalid("expected a public key")
        return self._context(self.svm.get_balance(_pubkey(params[0])) or 0)

    def _token_balance(self, params: Sequence[Any]) -> Any:
        if not params:
            raise _invalid("expected a public key")
        account = self.svm.get_account(_pubkey(params[0]))
        if account is None or account.owner not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or len(account.data) < 165:
            raise RPCFailure(-32602, "Invalid param: not a Token account")
        token = TokenAccount.from_bytes(bytes(account.data)[:165])
        mint_account = self.svm.get_account(token.mint)
        decimals = Mint.from_bytes(bytes(mint_account.data)[:82]).decimals if mint_account is not None else 0
        amount = token.amount
        whole, frac = divmod(amount, 10**decimals)
        text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)
        return self._context(
            {"amount": str(amount), "decimals": decimals, "uiAmount": amount / 10**decimals, "uiAmountString": text}
        )

    def _rent(self, params: Sequence[Any]) -> Any:
        if not params or type(params[0]) is not int or params[0] < 0:
            raise _invalid("expected a data length")
        return self.svm.minimum_balance_for_rent_exemption(params[0])

    def _fee_for_message(self, params: Sequence[Any]) -> Any:
        if not params or not isinstance(params[0], str):
            raise _invalid("expected a base64 message")
        try:
            raw = base64.b64decode(params[0], validate=True)
        except ValueError:
            raise _invalid("the message is not base64") from None
        signatures = raw[1] if raw[:1] == b"\x80" and len(raw) > 1 else (raw[0] if raw else 0)
        return self._context(signatures * LAMPORTS_PER_SIGNATURE)

    def _epoch_info(self, params: Sequence[Any]) -> Any:
        return {
            "absoluteSlot": self.slot,
            "blockHeight": self.slot,
            "epoch": 0,
            "slotIndex": self.slot,
            "slotsInEpoch": 432000,
            "transactionCount": len(self.statuses),
        }

    # -- transactions --------------------------------------------------------------------------------
    def _transaction(self, params: Sequence[Any]) -> tuple[VersionedTransaction, dict[str, Any]]:
        if not params or not isinstance(params[0], str):
            raise _invalid("expected an encoded transaction")
        config = _config(params, 1)
        encoding = config.get("encoding", "base58")
        try:
            if encoding == "base64":
                raw = base64.b64decode(params[0], validate=True)
            elif encoding == "base58":
                raw = _b58decode(params[0])
            else:
                raise _invalid(f"unsupported encoding {encoding!r}")
            return VersionedTransaction.from_bytes(raw), config
        except ValueError:
            raise _invalid(f"failed to deserialize the transaction ({encoding})") from None

    def _simulate(self, params: Sequence[Any]) -> Any:
        tx, config = self._transaction(params)
        sig_verify = bool(config.get("sigVerify", False))
        if config.get("replaceRecentBlockhash"):
            if sig_verify:
                raise _invalid("sigVerify may not be used with replaceRecentBlockhash")
            raise _invalid("replaceRecentBlockhash is not served here; sign over getLatestBlockhash's blockhash")
        if not sig_verify:
            self.svm.with_sigverify(False)
        try:
            result = self.svm.simulate_transaction(tx)
        finally:
            if not sig_verify:
                self.svm.with_sigverify(True)
        meta = result.meta()
        err = json.loads(result.to_json())["err"] if hasattr(result, "err") else None
        return self._context(
            {
                "err": err,
                "logs": list(meta.logs()),
                "accounts": None,
                "unitsConsumed": meta.compute_units_consumed(),
                "returnData": None,
                "innerInstructions": None,
            }
        )

    def _send(self, params: Sequence[Any]) -> Any:
        tx, config = self._transaction(params)
        signature = str(tx.signatures[0])
        if not config.get("skipPreflight", False):
            simulated = self._simulate([params[0], {"encoding": config.get("encoding", "base58"), "sigVerify": True}])
            value = simulated["value"]
            if value["err"] is not None:
                raise RPCFailure(
                    -32002,
                    f"Transaction simulation failed: {_describe(value['err'])}",
                    {**value, "accounts": None},
                )
        result = self.svm.send_transaction(tx)
        err = json.loads(result.to_json())["err"] if hasattr(result, "err") else None
        if isinstance(err, str):
            # Refused before execution (AlreadyProcessed, BlockhashNotFound, SignatureFailure, ...): no fee is
            # charged and nothing is recorded, as a node refuses it at sanitize or preflight.
            raise RPCFailure(-32002, f"Transaction simulation failed: {_describe(err)}", {"err": err, "logs": []})
        self.slot += 1
        self.statuses[signature] = (self.slot, err)
        return signature

    def _signature_statuses(self, params: Sequence[Any]) -> Any:
        if not params or not isinstance(params[0], list) or len(params[0]) > 256:
            raise _invalid("expected an array of at most 256 signatures")
        out: list[Any] = []
        for text in params[0]:
            try:
                Signature.from_string(text)
            except (TypeError, ValueError):
                raise _invalid(f"{text!r} is not a base58 signature") from None
            status = self.statuses.get(text)
            if status is None:
                out.append(None)
                continue
            slot, err = status
            out.append(
                {
                    "slot": slot,
                    "confirmations": None,
                    "err": err,
                    "confirmationStatus": "finalized",
                    "status": {"Ok": None} if err is None else {"Err": err},
                }
            )
        return self._context(out)


SVM_RPC_METHODS = (
    "getLatestBlockhash",
    "isBlockhashValid",
    "getAccountInfo",
    "getMultipleAccounts",
    "getBalance",
    "getTokenAccountBalance",
    "getMinimumBalanceForRentExemption",
    "getFeeForMessage",
    "simulateTransaction",
    "sendTransaction",
    "getSignatureStatuses",
    "getSlot",
    "getBlockHeight",
    "getEpochInfo",
    "getHealth",
    "getVersion",
    "getGenesisHash",
)


def _describe(err: Any) -> str:
    """Roughly the text a Solana node puts in its error message for a transaction error."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, detail = err["InstructionError"]
        if isinstance(detail, dict) and "Custom" in detail:
            return f"Error processing Instruction {index}: custom program error: {hex(detail['Custom'])}"
        return f"Error processing Instruction {index}: {detail}"
    if err == "AlreadyProcessed":
        return "This transaction has already been processed"
    if err == "BlockhashNotFound":
        return "Blockhash not found"
    return str(err)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise ValueError("not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def _handler(server: SvmRPCServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; without TCP_NODELAY the second waits for the client's
            # delayed ACK (~40 ms a call on Linux) on a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > _MAX_BODY:
                self._reply(
                    413, {"jsonrpc": "2.0", "error": {"code": -32600, "message": "request too large"}, "id": None}
                )
                return
            try:
                request = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply(200, {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None})
                return
            if isinstance(request, list):
                body: Any = [server.answer(r) for r in request] if request else server.answer(None)
            else:
                body = server.answer(request)
            self._reply(200, body)

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per request on stderr

    return Handler
