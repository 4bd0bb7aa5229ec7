"""The paid-request flow shared by every adapter, written once and without I/O.

ASGI, WSGI and Django differ only in how they wait: the ASGI and async-Django
shells ``await`` the facilitator and the store, the WSGI and sync-Django shells
block. So the flow is a generator that *yields* what it needs done
(:class:`Verify`, :class:`Settle`, :class:`Reserve`, :class:`Release`,
:class:`MarkSettled`) and receives the results, like httpx's ``Auth.auth_flow``;
:func:`run_sync` and :func:`run_async` perform the effects. One request::

    flow = PaidFlow(gate, requirements, resource, head=False)
    answer = run_sync(flow.admit(payment_headers), facilitator, store)   # an Answer (402/400/502) or None
    ...the app runs with flow.payment...
    decision = run_sync(flow.start(status), facilitator, store)        # None, extra headers, or an Answer
    run_sync(flow.finish(), facilitator, store)                          # always, when the response is done
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl

from ._exceptions import FacilitatorError, InvalidPaymentError, UnpriceableRequestError, X402Error
from ._gate import PAYMENT_ALREADY_USED, PAYMENT_IN_PROGRESS, Gate, Headers, _Route, logger
from .facilitator._protocol import Facilitator, SyncFacilitator
from .models import Payment, PaymentPayload, PaymentRequirements, ResourceInfo
from .pricing import PaymentRequest
from .stores import SETTLED, PaymentStore, SyncPaymentStore, payment_key

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response the middleware sends instead of the app's (402, 400, 500, 502)."""

    status: int
    headers: Headers
    body: bytes


class Verify(NamedTuple):
    payload: PaymentPayload
    requirement: PaymentRequirements


class Settle(NamedTuple):
    payload: PaymentPayload
    requirement: PaymentRequirements


class Reserve(NamedTuple):
    key: str
    ttl: float


class Release(NamedTuple):
    key: str


class MarkSettled(NamedTuple):
    key: str
    ttl: float


Effect = Verify | Settle | Reserve | Release | MarkSettled
Flow = Generator[Effect, Any, T]


class SettleWhen(Protocol):
    def __call__(self, status: int, /) -> bool: ...


def settle_on_2xx(status: int) -> bool:
    """Default settlement predicate: only successful responses are paid for (x402-conformance R15)."""
    return 200 <= status < 300


class PaidFlow:
    """One paid request from its payment header to settlement. Created per request, never shared.

    ``outcome`` moves ``unsent`` -> ``settling`` -> ``settled`` | ``replaced``, or
    ``unsent`` -> ``forwarded`` (not settled). The reservation is released only
    from ``unsent``/``forwarded``: once a settlement was attempted and its
    outcome is unknown, the payment stays reserved so it is never served twice.
    """

    __slots__ = ("_key", "_ttl", "gate", "head", "outcome", "payment", "requirements", "resource", "settle_when")

    def __init__(
        self,
        gate: Gate,
        requirements: tuple[PaymentRequirements, ...],
        resource: Callable[[], ResourceInfo],
        *,
        head: bool,
        settle_when: SettleWhen = settle_on_2xx,
    ) -> None:
        self.gate = gate
        self.requirements = requirements
        self.resource = resource
        self.head = head
        self.settle_when = settle_when
        self.outcome = "unsent"
        self.payment: Payment | None = None
        self._key = ""
        self._ttl = 0.0

    def _challenge(self, error: str, message: str | None, **kwargs: Any) -> Answer:
        return Answer(*self.gate.challenge(self.requirements, self.resource(), error=error, message=message, **kwargs))

    def admit(self, headers: Iterable[tuple[bytes, bytes]]) -> Flow[Answer | None]:
        """Read, match, verify and reserve the payment. ``None`` means: run the app (``self.payment`` is set)."""
        gate = self.gate
        try:
            payload = gate.read_payment(headers)
            if payload is None:
                return Answer(*gate.challenge(self.requirements, self.resource()))
            requirement, local = gate.check(payload, self.requirements)
        except InvalidPaymentError as exc:
            return self._challenge(exc.reason, exc.message, status=exc.status_code)
        if local is None:  # contract-wallet signature: only the facilitator can tell
            try:
                remote = yield Verify(payload, requirement)
            except FacilitatorError as exc:
                logger.warning("x402: facilitator verify failed: %s", exc)
                return Answer(*gate.error(502, "facilitator_error", f"the payment could not be verified: {exc}"))
            if not remote.is_valid:
                return self._challenge(remote.invalid_reason or "invalid_payment", remote.invalid_message)

        auth = payload.authorization
        key = payment_key(requirement.network.chain_id, requirement.asset.address, auth.from_address, auth.nonce)
        ttl = max(auth.valid_before - time.time(), 0) + 60
        state = yield Reserve(key, ttl)
        if state is not None:
            if state == SETTLED:
                return self._challenge(PAYMENT_ALREADY_USED, "this payment was already used; sign a new one")
            return self._challenge(
                PAYMENT_IN_PROGRESS, "this payment is being used by another request; sign a new one or retry later"
            )
        self._key, self._ttl = key, ttl
        self.payment = Payment(auth.from_address, requirement.amount, requirement, payload)
        return None

    def start(self, status: int) -> Flow[Answer | Headers | None]:
        """The app starts its response with ``status``: settle if it is paid for.

        Returns ``None`` (send the app's response untouched), the headers to add
        to it (settled), or an :class:`Answer` to send instead (the app's body is dropped).
        """
        if self.head or not self.settle_when(status):
            self.outcome = "forwarded"
            return None
        assert self.payment is not None, "admit() must have returned None first"
        payload, requirement = self.payment.payload, self.payment.requirements
        self.outcome = "settling"
        try:
            result = yield Settle(payload, requirement)
            if not result.success and result.error_reason == "settlement_pending":
                # The transaction was sent but not confirmed in time; ask once more, as the official server does.
                result = yield Settle(payload, requirement)
        except FacilitatorError as exc:
            # Unknown outcome: keep the reservation so this payment cannot be served twice.
            self.outcome = "replaced"
            logger.error("x402: settlement failed for %s: %s", payload.payer, exc)
            return Answer(*self.gate.error(502, "facilitator_error", f"the payment could not be settled: {exc}"))
        if not result.success:
            self.outcome = "replaced"
            logger.info("x402: settlement refused for %s: %s", payload.payer, result.error_reason)
            if result.error_reason != "settlement_pending":
                yield Release(self._key)
            return self._challenge(
                result.error_reason or "settlement_failed",
                result.error_message or "the payment could not be settled",
                settlement=result,
                x402_version=payload.x402_version,
            )
        self.outcome = "settled"
        yield MarkSettled(self._key, self._ttl)
        return self.gate.settlement_headers(result, requirement, payload.x402_version)

    def finish(self) -> Flow[None]:
        """The request is over (served, failed or abandoned): free an unsettled reservation."""
        if self.outcome in ("unsent", "forwarded") and self._key:
            yield Release(self._key)


def run_sync(flow: Flow[T], facilitator: SyncFacilitator, store: SyncPaymentStore) -> T:
    """Drive a flow with blocking calls (WSGI, sync Django)."""
    try:
        effect = next(flow)
        while True:
            try:
                if isinstance(effect, Reserve):
                    result: Any = store.reserve_sync(effect.key, effect.ttl)
                elif isinstance(effect, Release):
                    store.release_sync(effect.key)
                    result = None
                elif isinstance(effect, MarkSettled):
                    store.mark_settled_sync(effect.key, effect.ttl)
                    result = None
                elif isinstance(effect, Settle):
                    result = facilitator.settle(effect.payload, effect.requirement)
                else:
                    result = facilitator.verify(effect.payload, effect.requirement)
            except FacilitatorError as exc:
                effect = flow.throw(exc)
            else:
                effect = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(flow: Flow[T], facilitator: Facilitator, store: PaymentStore) -> T:
    """Drive a flow with awaits (ASGI, async Django)."""
    try:
        effect = next(flow)
        while True:
            try:
                if isinstance(effect, Reserve):
                    result: Any = await store.reserve(effect.key, effect.ttl)
                elif isinstance(effect, Release):
                    await store.release(effect.key)
                    result = None
                elif isinstance(effect, MarkSettled):
                    await store.mark_settled(effect.key, effect.ttl)
                    result = None
                elif isinstance(effect, Settle):
                    result = await facilitator.settle(effect.payload, effect.requirement)
                else:
                    result = await facilitator.verify(effect.payload, effect.requirement)
            except FacilitatorError as exc:
                effect = flow.throw(exc)
            else:
                effect = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def pricing_failure(route: _Route, exc: X402Error) -> Answer:
    """The answer when a route cannot be priced: 400 for the client's input, 500 (logged) for a policy bug."""
    if isinstance(exc, UnpriceableRequestError):
        return Answer(*Gate.error(400, exc.reason, exc.message))
    logger.error("x402: the price function of %s failed: %s", route.pattern.path, exc, exc_info=exc)
    # The exception text stays in the log: it may describe the server's internals.
    return Answer(
        *Gate.error(
            500,
            "pricing_error",
            "the price of this request could not be computed (a server-side pricing bug; see its log)",
        )
    )


def private_cache_control(value: str | None) -> str | None:
    """A paid response must not be served from a shared cache: the new ``Cache-Control``, or ``None`` to keep it."""
    if value is None or not value.strip():
        return "private"
    if "private" in value or "no-store" in value:
        return None
    return f"{value}, private"


def parse_json_body(raw: bytes) -> Any:
    """The parsed JSON body a pricing policy sees, or ``None`` when it is empty or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def request_from_environ(
    environ: Mapping[str, Any], path: str, path_params: Mapping[str, str], body: Any
) -> PaymentRequest:
    """Build the pricing view of a WSGI ``environ`` (or Django's ``request.META``, which has the same keys)."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return PaymentRequest(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=path,
        path_params=MappingProxyType(dict(path_params)),
        query=MappingProxyType(dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))),
        headers=MappingProxyType(headers),
        body=body,
    )


def payment_headers_from_environ(environ: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """The payment headers of an ``environ``/``META`` in ASGI form, ``PAYMENT-SIGNATURE`` first."""
    out = []
    for key, name in (("HTTP_PAYMENT_SIGNATURE", b"payment-signature"), ("HTTP_X_PAYMENT", b"x-payment")):
        value = environ.get(key)
        if isinstance(value, str):
            out.append((name, value.encode("latin-1", "replace")))
    return out
