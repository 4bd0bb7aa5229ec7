"""``X402Auth``: answer x402 (HTTP 402) challenges from any httpx client, sync or async.

An :class:`httpx.Auth` in the DigestAuth mould (style R18): send the request; on
a 402 read the requirements (v2 ``PAYMENT-REQUIRED`` header, else a v1 JSON
body), pick the first one this client may pay, sign it with its scheme
(:mod:`x402_middleware.schemes`: EVM ``exact`` with EIP-3009 or Permit2, EVM ``upto``, Solana ``exact``) and
resend the request **once** with
``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1). Signing does no I/O, so one
auth flow serves ``httpx.Client`` and ``httpx.AsyncClient``; all per-request
state lives in the flow (x402 #398: a shared retry flag let 1 of N concurrent
requests pay). See ``../shared/docs/x402-protocol.md`` §2.3, §3.1.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from . import _headers as H
from . import _json
from ._exceptions import ConfigurationError, MalformedPaymentError, PaymentClientError, SpendLimitError
from ._fingerprint import PAYMENT_IDENTIFIER
from .evm import address_of
from .evm.abi import encode_call
from .evm.jsonrpc import build_request
from .models import PaymentRequirements, SettleResult
from .money import format_usd, parse_usd, to_atomic
from .networks import Asset, check_address, find_network, get_network
from .schemes import PaymentScheme, find_scheme
from .schemes.evm.permit2 import EIP2612_GAS_SPONSORING, PERMIT2_ADDRESS, eip2612_gas_sponsoring

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["X402Auth", "settlement_of"]

_UINT = re.compile(r"^[0-9]{1,78}\Z")

#: Largest PAYMENT-REQUIRED header read (many ``accepts`` plus extensions can exceed the 16 KiB payment limit).
MAX_CHALLENGE_BYTES = 64 * 1024
# Spend caps are kept in atomic units of a 6-decimal dollar stablecoin (USDC, USDT0).
_CAP_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class _RPC:
    """A pause in the payment flow for one JSON-RPC exchange with ``url`` (the drivers post ``body``, send back the JSON)."""

    url: str
    body: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Choice:
    wire: Mapping[str, Any]  # verbatim, echoed as v2 ``accepted``
    requirement: PaymentRequirements  # what is signed
    scheme: PaymentScheme
    cost: int  # in cap units


class X402Auth(httpx.Auth):
    """Pay for x402-protected HTTP resources with USDC, transparently.

    ``account`` is an ``eth_account`` ``LocalAccount`` or a raw private key (hex
    or 32 bytes), for EVM networks; ``solana_key`` a Solana secret key (base58 of its 64 bytes, as wallets
    export it, or the bytes; needs the ``svm`` extra) for Solana networks, where signing needs a recent
    blockhash: the client asks ``solana_rpc_url`` (``getLatestBlockhash``, and ``getAccountInfo`` once per
    mint for its token program) unless the requirement carries one. Give either key or both. By default
    the client pays on every registered network it has a key for, only in
    its default USDC-like asset (``assets`` widens that), at most ``$1`` a
    request. Caps take atomic units of a 6-decimal dollar token or strings such
    as ``"$0.05"``; ``None`` lifts a cap. Every *signed* payment counts toward
    ``max_total_spend``, settled or not: the server holds a valid authorization
    until it expires. An ``upto`` requirement (Permit2: the server settles the actual amount later) is signed
    for its ``amount``, the maximum, and that maximum is what the caps count; ``exact`` with
    ``extra.assetTransferMethod: "permit2"`` is signed with Permit2 too (the wallet must have approved Permit2
    for the token once, or give ``evm_rpc_url``: then, when the server declares the ``eip2612GasSponsoring``
    extension and the wallet's Permit2 allowance is short, the client also signs an EIP-2612 permit for Permit2
    that the facilitator submits with the payment, so no ETH is ever needed). When a 402 offers several options this client may pay (say ``exact`` over EIP-3009
    and ``upto``), it takes the first in the server's order among the most preferred network
    (``prefer_networks``) within ``max_amount_per_payment``: the server lists its preference first.

    Example::

        auth = X402Auth(Account.from_key(key), max_amount_per_payment="$0.05", max_total_spend="$2")
        with httpx.Client(auth=auth) as client:
            r = client.get("https://api.example.com/weather")
        print(settlement_of(r).transaction, auth.spent)

        solana = X402Auth(solana_key="<base58 secret>", solana_rpc_url="https://api.mainnet-beta.solana.com")
    """

    # The paid retry resends the request, so a streamed request body is buffered first.
    requires_request_body = True
    # v1 servers put the requirements in the 402 body. Only 402 bodies are read (see
    # sync_auth_flow): reading every response would buffer paid SSE streams.
    requires_response_body = True

    def __init__(
        self,
        account: LocalAccount | str | bytes | None = None,
        *,
        solana_key: str | bytes | None = None,
        solana_rpc_url: str | None = None,
        evm_rpc_url: str | None = None,
        networks: Iterable[str] | None = None,
        prefer_networks: Iterable[str] = (),
        assets: Iterable[Asset | str] | None = None,
        max_amount_per_payment: int | str | Decimal | None = "$1",
        max_total_spend: int | str | Decimal | None = None,
        settlement_retries: int = 3,
        max_retry_wait: float = 10.0,
    ) -> None:
        if settlement_retries < 0 or max_retry_wait < 0:
            raise ConfigurationError("settlement_retries and max_retry_wait must not be negative")
        self.settlement_retries = settlement_retries
        self.max_retry_wait = max_retry_wait
        if account is None and solana_key is None:
            raise ConfigurationError("X402Auth needs a key: account= (EVM) and/or solana_key= (Solana)")
        self._keys: dict[str, bytes] = {}
        self.address: str | None = None  # the EVM address, when there is an EVM key
        self.solana_address: str | None = None
        if account is not None:
            self._keys["eip155"] = _private_key(account)
            self.address = address_of(self._keys["eip155"])
        if solana_key is not None:
            try:
                from .svm import keypair_from
            except ImportError as exc:
                raise ConfigurationError(str(exc)) from None
            try:
                keypair = keypair_from(solana_key)
            except ValueError as exc:
                raise ConfigurationError(f"solana_key: {exc}") from None
            self._keys["solana"] = bytes(keypair)
            self.solana_address = str(keypair.pubkey())
        self.solana_rpc_url = solana_rpc_url
        self.evm_rpc_url = evm_rpc_url
        self._token_programs: dict[str, str] = {}  # mint -> its token program (a mint never changes program)
        self._networks = None if networks is None else frozenset(get_network(n).caip2 for n in networks)
        self._prefer = tuple(get_network(n).caip2 for n in prefer_networks)
        self._assets: dict[str, Asset | None] | None = None
        if assets is not None:
            self._assets = {}
            for asset in assets:
                address = asset.address if isinstance(asset, Asset) else asset
                check_address(address, "each of assets= (an Asset or a token address)")
                self._assets[address.lower()] = asset if isinstance(asset, Asset) else None
        self.max_amount_per_payment = _cap(max_amount_per_payment, "max_amount_per_payment")
        self.max_total_spend = _cap(max_total_spend, "max_total_spend")
        self._lock = threading.Lock()
        self._spent = 0

    @property
    def spent(self) -> int:
        """Total signed so far, in atomic units of a 6-decimal dollar token (``1000`` is $0.001)."""
        return self._spent

    def _flow(self, request: httpx.Request) -> Generator[httpx.Request | float | _RPC, Any, None]:
        """The payment flow, for both drivers below: it yields requests, a ``float`` (seconds to pause) or an
        :class:`_RPC` exchange (the drivers send back its JSON answer)."""
        if H.PAYMENT_SIGNATURE in request.headers or H.X_PAYMENT in request.headers:
            yield request  # the caller paid already; never add a second payment
            return
        response = yield request
        if response is None or response.status_code != 402:
            return
        url = str(request.url)
        challenge = _read_challenge(response, url)
        if challenge is None:
            return  # a 402 that is not an x402 challenge
        choice = self._choose(challenge["x402Version"], challenge["accepts"], url)
        added: dict[str, Any] = {}
        if choice.requirement.network.namespace == "solana":
            exchange = self._solana_lookups(choice.requirement)
            if exchange is not None:
                choice = self._with_chain_facts(choice, (yield exchange))
        elif self._sponsorable(challenge, choice.requirement):
            added = self._gas_sponsoring(choice.requirement, (yield self._permit2_lookups(choice.requirement)))
        header = self._sign(challenge, choice, url, added)
        request.headers[header[0]] = header[1]
        response = yield request
        for _ in range(self.settlement_retries):
            wait = None if response is None else _settlement_wait(response)
            if wait is None:
                return  # whatever came back is the caller's answer
            yield min(wait, self.max_retry_wait)
            response = yield request  # the same payment: the server follows up its settlement

    # httpx.Auth's two drivers over _flow: only 402 and 503 bodies are read before the flow sees them (reading every
    # response would buffer paid SSE streams), and a float from the flow is a pause.
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, float):
                time.sleep(step)
                step = flow.send(None)
                continue
            if isinstance(step, _RPC):
                step = flow.send(_rpc_answer(step, httpx.post(step.url, json=step.body, timeout=10.0)))
                continue
            response = yield step
            if response.status_code in (402, 503):
                response.read()
            try:
                step = flow.send(response)
            except StopIteration:
                break

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, float):
                await asyncio.sleep(step)
                step = flow.send(None)
                continue
            if isinstance(step, _RPC):
                async with httpx.AsyncClient(timeout=10.0) as rpc:
                    step = flow.send(_rpc_answer(step, await rpc.post(step.url, json=step.body)))
                continue
            response = yield step
            if response.status_code in (402, 503):
                await response.aread()
            try:
                step = flow.send(response)
            except StopIteration:
                break

    def _solana_lookups(self, requirement: PaymentRequirements) -> _RPC | None:
        """The RPC calls a Solana payment still needs (the latest blockhash, the mint's program), or ``None``."""
        extra = requirement.extra
        mint = requirement.asset.address
        calls = []
        if not isinstance(extra.get("recentBlockhash"), str):
            calls.append(build_request("getLatestBlockhash", [{"commitment": "confirmed"}], 1))
        if mint not in self._token_programs and "tokenProgram" not in extra:
            calls.append(build_request("getAccountInfo", [mint, {"encoding": "base64"}], 2))
        if not calls:
            return None
        if self.solana_rpc_url is None:
            raise PaymentClientError(
                "paying on Solana needs a recent blockhash: give X402Auth(solana_rpc_url=...) (a Solana JSON-RPC URL)"
            )
        return _RPC(self.solana_rpc_url, calls)

    def _sponsorable(self, challenge: dict[str, Any], requirement: PaymentRequirements) -> bool:
        """Whether this Permit2 payment may carry an EIP-2612 permit (the server declares the extension)."""
        extensions = challenge.get("extensions")
        permit2 = requirement.scheme == "upto" or requirement.extra.get("assetTransferMethod") == "permit2"
        return (
            permit2
            and self.evm_rpc_url is not None
            and isinstance(extensions, dict)
            and EIP2612_GAS_SPONSORING in extensions
            and bool(requirement.asset.name)
        )

    def _permit2_lookups(self, requirement: PaymentRequirements) -> _RPC:
        """The wallet's Permit2 allowance and EIP-2612 nonce on the token (two ``eth_call`` s)."""
        assert self.evm_rpc_url is not None and self.address is not None
        token = requirement.asset.address
        calls = [
            encode_call("allowance(address,address)", self.address, PERMIT2_ADDRESS),
            encode_call("nonces(address)", self.address),
        ]
        body = [
            build_request("eth_call", [{"to": token, "data": "0x" + d.hex()}, "latest"], i)
            for i, d in enumerate(calls, 1)
        ]
        return _RPC(self.evm_rpc_url, body)

    def _gas_sponsoring(self, requirement: PaymentRequirements, answers: dict[int, Any]) -> dict[str, Any]:
        """``{"eip2612GasSponsoring": ...}`` when the allowance is short of the amount, else nothing to add."""
        try:
            allowance, nonce = int(answers[1], 16), int(answers[2], 16)
        except (KeyError, TypeError, ValueError):
            raise PaymentClientError(f"the EVM RPC's allowance/nonces answers are unusable: {answers!r}") from None
        if allowance >= requirement.amount:
            return {}
        deadline = int(time.time()) + requirement.max_timeout_seconds
        key = self._keys["eip155"]
        return {EIP2612_GAS_SPONSORING: eip2612_gas_sponsoring(requirement, key, nonce, deadline)}

    def _with_chain_facts(self, choice: _Choice, answers: dict[int, Any]) -> _Choice:
        """``choice`` with the blockhash and the mint's token program from the RPC ``answers`` (by request id)."""
        requirement = choice.requirement
        extra = dict(requirement.extra)
        mint = requirement.asset.address
        if 1 in answers:
            try:
                extra["recentBlockhash"] = str(answers[1]["value"]["blockhash"])
            except (KeyError, TypeError):
                raise PaymentClientError(
                    f"the Solana RPC's getLatestBlockhash answer is unusable: {answers[1]!r}"
                ) from None
        if 2 in answers:
            account = answers[2].get("value") if isinstance(answers[2], dict) else None
            if not isinstance(account, dict) or not isinstance(account.get("owner"), str):
                raise PaymentClientError(f"mint {mint} does not exist on the Solana RPC's cluster")
            self._token_programs[mint] = account["owner"]
        extra.setdefault("tokenProgram", self._token_programs.get(mint))
        if extra["tokenProgram"] is None:
            del extra["tokenProgram"]
        return _Choice(choice.wire, replace(requirement, extra=extra), choice.scheme, choice.cost)

    def _pay(self, request: httpx.Request, response: httpx.Response) -> tuple[str, str] | None:
        """The payment header answering the 402 ``response`` to ``request`` (``None``: not an x402 challenge), made
        without network I/O: a Solana option must carry its blockhash (``extra.recentBlockhash``)."""
        url = str(request.url)
        challenge = _read_challenge(response, url)
        if challenge is None:
            return None
        choice = self._choose(challenge["x402Version"], challenge["accepts"], url)
        if choice.requirement.network.namespace == "solana" and self._solana_lookups(choice.requirement) is not None:
            raise PaymentClientError("this Solana payment needs the RPC lookups of the auth flow; send the request")
        return self._sign(challenge, choice, url)

    def _sign(
        self, challenge: dict[str, Any], choice: _Choice, url: str, added: Mapping[str, Any] | None = None
    ) -> tuple[str, str]:
        version = challenge["x402Version"]
        try:
            inner = choice.scheme.sign(choice.requirement, self._keys[choice.scheme.namespace], int(time.time()))
        except MalformedPaymentError as exc:
            raise PaymentClientError(f"cannot pay {url}: {exc.message}") from None
        payload: dict[str, Any]
        if version == 2:
            resource = challenge.get("resource")
            if not isinstance(resource, dict):
                resource = {"url": url, "description": "", "mimeType": ""}
            payload = {"x402Version": 2, "resource": resource, "accepted": choice.wire, "payload": inner}
            if isinstance(challenge.get("extensions"), dict):
                payload["extensions"] = _with_answers(_with_payment_identifier(challenge["extensions"]), added or {})
        else:
            payload = {
                "x402Version": 1,
                "scheme": choice.requirement.scheme,
                "network": choice.wire["network"],
                "payload": inner,
            }
        self._reserve(choice.cost, url)
        name = "PAYMENT-SIGNATURE" if version == 2 else "X-PAYMENT"
        return name, H.encode_header(payload)

    def _choose(self, version: int, accepts: list[Any], url: str) -> _Choice:
        usable: list[tuple[int, int, _Choice]] = []
        refused: list[str] = []
        for index, requirement in enumerate(accepts):
            choice = self._usable(version, requirement)
            if isinstance(choice, str):
                refused.append(choice)
                continue
            caip2 = choice.requirement.network.caip2
            usable.append((self._prefer.index(caip2) if caip2 in self._prefer else len(self._prefer), index, choice))
        if not usable:
            raise PaymentClientError(
                f"cannot pay {url}: none of its {len(accepts)} payment option(s) is usable "
                f"({'; '.join(refused) or 'no options offered'}); widen networks= or assets= if you trust them"
            )
        usable.sort(key=lambda item: item[:2])
        cap = self.max_amount_per_payment
        for _, _, choice in usable:
            if cap is None or choice.cost <= cap:
                return choice
        cheapest = min(c.cost for _, _, c in usable)
        raise SpendLimitError(
            f"{url} asks {format_usd(cheapest)}, over max_amount_per_payment={format_usd(cap or 0)}; "
            f'pass X402Auth(..., max_amount_per_payment="{format_usd(cheapest)}") or more (None lifts the cap)'
        )

    def _usable(self, version: int, req: Any) -> _Choice | str:
        """The payment a requirement asks for, or why this client will not make it."""
        if not isinstance(req, dict):
            return "an option is not a JSON object"
        name = req.get("network")
        network = find_network(name) if isinstance(name, str) else None
        if network is None:
            return f"network {name!r} is unknown (add it with register_network())"
        scheme_name = req.get("scheme")
        scheme = find_scheme(scheme_name, network.namespace) if isinstance(scheme_name, str) else None
        if scheme is None:
            return f"scheme {scheme_name!r} is not supported on {network.caip2}"
        if self._networks is not None and network.caip2 not in self._networks:
            return f"network {network.caip2} is not in networks="
        if network.namespace not in self._keys:
            which = "solana_key=" if network.namespace == "solana" else "account= (an EVM key)"
            return f"network {network.caip2} needs {which}"
        asset = req.get("asset")
        if not isinstance(asset, str) or not scheme.valid_address(asset):
            return f"asset {asset!r} is not a token address"
        known: Asset | None
        if self._assets is None:
            known = network.asset
            if known is None or known.address.lower() != asset.lower():
                return f"asset {asset} is not the default token of {network.caip2} (allow it with assets=)"
        elif asset.lower() in self._assets:
            known = self._assets[asset.lower()]
            if known is None and network.asset is not None and network.asset.address.lower() == asset.lower():
                known = network.asset
        else:
            return f"asset {asset} on {network.caip2} is not in assets="
        amount = req.get("amount" if version == 2 else "maxAmountRequired")
        if not isinstance(amount, str) or not _UINT.match(amount) or int(amount) >= 1 << 256:
            return f"amount {amount!r} is not an integer string"
        pay_to = req.get("payTo")
        if not isinstance(pay_to, str) or not scheme.valid_address(pay_to):
            return f"payTo {pay_to!r} is not an address"
        timeout = req.get("maxTimeoutSeconds")
        if type(timeout) is not int or timeout <= 0:
            return f"maxTimeoutSeconds {timeout!r} is not a positive integer"
        raw_extra = req.get("extra")
        extra: dict[str, Any] = dict(raw_extra) if isinstance(raw_extra, dict) else {}
        if known is not None:  # the token this client trusts: its own domain fills what the server left out
            extra = {**scheme.requirement_extra(PaymentRequirements(network, known, 0, pay_to, extra=extra)), **extra}
        try:
            parsed, pay_to, rest = scheme.parse_requirement(network, asset, pay_to, extra)
        except MalformedPaymentError as exc:
            return exc.message
        decimals = known.decimals if known is not None else _CAP_DECIMALS
        if parsed.decimals != decimals:
            parsed = Asset(parsed.address, parsed.name, parsed.version, decimals, parsed.symbol)
        requirement = PaymentRequirements(network, parsed, int(amount), pay_to, timeout, scheme.scheme, extra=rest)
        return _Choice(req, requirement, scheme, _cap_units(int(amount), decimals))

    def _reserve(self, cost: int, url: str) -> None:
        # Check and add under one lock: concurrent requests (threads or tasks) can never overshoot the cap.
        with self._lock:
            total = self._spent + cost
            cap = self.max_total_spend
            if cap is not None and total > cap:
                raise SpendLimitError(
                    f"paying {format_usd(cost)} for {url} would bring total spend to {format_usd(total)}, over "
                    f"max_total_spend={format_usd(cap)} ({format_usd(self._spent)} signed already); "
                    "use an X402Auth with a larger max_total_spend (None lifts the cap)"
                )
            self._spent = total


def _rpc_answer(call: _RPC, response: httpx.Response) -> dict[int, Any]:
    """The ``result`` of each JSON-RPC request of ``call`` by id; raises :class:`PaymentClientError` for an error."""
    try:
        answers = response.json()
    except ValueError:
        answers = None
    if response.status_code != 200 or not isinstance(answers, list):
        raise PaymentClientError(f"the RPC {call.url} answered {response.status_code}: {response.text[:200]}")
    out: dict[int, Any] = {}
    for answer in answers:
        if not isinstance(answer, dict) or "error" in answer:
            raise PaymentClientError(f"the RPC {call.url} refused a call: {answer!r}")
        if isinstance(answer.get("id"), int):
            out[answer["id"]] = answer.get("result")
    return out


def _settlement_wait(response: httpx.Response) -> float | None:
    """Seconds to wait before resending the same payment, or ``None`` when ``response`` is not a pending settlement."""
    if response.status_code != 503:
        return None
    try:
        error = _json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None
    if error not in ("settlement_pending", "settlement_unknown"):
        return None
    retry_after = response.headers.get("retry-after", "")
    return float(retry_after) if retry_after.isdigit() else 1.0


def settlement_of(response: httpx.Response) -> SettleResult | None:
    """The settlement a server reported for a paid response, or ``None`` if it reported none.

    Reads ``PAYMENT-RESPONSE`` (v2) or ``X-PAYMENT-RESPONSE`` (v1); a settlement
    refused by the chain comes back with ``success`` false and ``error_reason``.

    Example::

        r = client.post("/v1/chat/completions", json=body)
        if (s := settlement_of(r)) is not None:
            print(s.success, s.transaction, s.payer)
    """
    for name in (H.PAYMENT_RESPONSE, H.X_PAYMENT_RESPONSE):
        value = response.headers.get(name)
        if value is not None:
            try:
                return SettleResult.from_wire(H.decode_header(value, name=name.upper(), allow_floats=True))
            except MalformedPaymentError as exc:
                raise PaymentClientError(f"the server's {name.upper()} header is unreadable: {exc}") from None
    return None


def _with_payment_identifier(extensions: dict[str, Any]) -> dict[str, Any]:
    """The challenge's extensions, echoed (v2 §extensions), with an id for ``payment-identifier`` when the server
    declares it: the payment's idempotency key, kept by every resend of this payment (x402-protocol.md §2)."""
    declared = extensions.get(PAYMENT_IDENTIFIER)
    if not isinstance(declared, dict) or not isinstance(declared.get("info"), dict):
        return extensions
    info = {**declared["info"], "id": "pay_" + secrets.token_hex(16)}
    return {**extensions, PAYMENT_IDENTIFIER: {**declared, "info": info}}


def _with_answers(echo: dict[str, Any], answers: Mapping[str, Any]) -> dict[str, Any]:
    """The echoed extensions with each answered one's ``info`` overlaid by the client's fields (a deep merge:
    servers refuse an echo that drops or changes what they declared, e.g. ``schema``)."""
    out = dict(echo)
    for key, answer in answers.items():
        declared = echo.get(key)
        if isinstance(declared, dict) and isinstance(declared.get("info"), dict):
            out[key] = {**declared, **answer, "info": {**declared["info"], **answer["info"]}}
        else:
            out[key] = answer
    return out


def _read_challenge(response: httpx.Response, url: str) -> dict[str, Any] | None:
    """The 402's ``PaymentRequired`` (header first, then a v1 body, as the official clients do)."""
    value = response.headers.get(H.PAYMENT_REQUIRED)
    if value is not None:
        try:
            challenge = H.decode_header(
                value, name="PAYMENT-REQUIRED", max_bytes=MAX_CHALLENGE_BYTES, allow_floats=True
            )
        except MalformedPaymentError as exc:
            raise PaymentClientError(f"{url} answered 402 with an unreadable challenge: {exc}") from None
        if challenge.get("x402Version") != 2:
            raise PaymentClientError(
                f"{url} sent a PAYMENT-REQUIRED header with x402Version "
                f"{challenge.get('x402Version')!r}; only 2 is defined for that header"
            )
    else:
        try:
            challenge = _json.loads(response.content)
        except ValueError:
            return None
        if not isinstance(challenge, dict) or challenge.get("x402Version") != 1:
            return None
    if not isinstance(challenge.get("accepts"), list):
        raise PaymentClientError(f"{url} answered 402 without an 'accepts' list of payment options")
    return challenge


def _private_key(account: Any) -> bytes:
    if isinstance(account, str):
        text = account[2:] if account[:2] in ("0x", "0X") else account
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ConfigurationError("the private key string is not hex") from None
    elif isinstance(account, (bytes, bytearray)):
        raw = bytes(account)
    elif isinstance(getattr(account, "key", None), bytes):
        raw = bytes(account.key)  # eth_account LocalAccount
    else:
        raise TypeError(
            f"Invalid 'account' argument of type {type(account).__name__}: "
            "pass an eth_account LocalAccount or a 32-byte private key"
        )
    try:
        if len(raw) != 32:
            raise ValueError
        address_of(raw)
    except ValueError:
        raise ConfigurationError("the private key must be 32 bytes within the secp256k1 order") from None
    return raw


def _cap(value: int | str | Decimal | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigurationError(f"{what} must be >= 0 atomic units, got {value}")
        return value
    try:
        return to_atomic(parse_usd(value), _CAP_DECIMALS, exact=False)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{what}: {exc}") from None


def _cap_units(amount: int, decimals: int) -> int:
    factor: int = 10 ** abs(decimals - _CAP_DECIMALS)
    if decimals <= _CAP_DECIMALS:
        return amount * factor
    return -(-amount // factor)  # round up: rounding never lets a payment slip under a cap
