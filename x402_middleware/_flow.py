"""The paid-request flow shared by every adapter, written once and without I/O.

ASGI, WSGI and Django differ only in how they wait: the ASGI and async-Django
shells ``await`` the facilitator and the store, the WSGI and sync-Django shells
block. So the flow is a generator that *yields* what it needs done
(:class:`Verify`, :class:`Settle`, :class:`Reserve`, :class:`Swap`, :class:`Emit`, :class:`Recall`) and receives the results, like httpx's ``Auth.auth_flow``;
:func:`run_sync` and :func:`run_async` perform the effects. One request::

    flow = PaidFlow(gate, requirements, resource, head=False)
    answer = run_sync(flow.admit(payment_headers), facilitator, store)   # an Answer (402/400/502/503) or None
    ...the app runs with flow.payment...
    decision = run_sync(flow.start(status), facilitator, store)        # None, extra headers, or an Answer
    run_sync(flow.finish(), facilitator, store)                          # always, when the response is done
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl

from cachetools import TTLCache

from . import _json, events
from ._exceptions import (
    FacilitatorError,
    InvalidPaymentError,
    JSONTooDeepError,
    PricingError,
    StoreUnavailableError,
    UnpriceableRequestError,
    X402Error,
)
from ._gate import PAYMENT_IN_PROGRESS, PAYMENT_REQUIRED_ERROR, Answer, Gate, Headers, PaidRoute, Quoted, logger
from .events import Listener, PaymentEvent
from .facilitator import Facilitator, SyncFacilitator
from .models import Payment, PaymentPayload, PaymentRequirements, ResourceInfo, SettleResult
from .pricing import PaymentRequest
from .schemes import find_scheme
from .stores import (
    BURNED,
    CLAIMED,
    PENDING,
    SETTLED,
    SETTLING,
    PaymentRecord,
    PaymentStore,
    SyncPaymentStore,
)
from .usage import UPTO, ChargeFunction, Served, Usage, header_map

if TYPE_CHECKING:
    from .journal import Journal, JournalEntry

T = TypeVar("T")


class Verify(NamedTuple):
    payload: PaymentPayload
    requirement: PaymentRequirements


class Settle(NamedTuple):
    payload: PaymentPayload
    requirement: PaymentRequirements


class Reserve(NamedTuple):
    key: str
    ttl: float


class Swap(NamedTuple):
    key: str
    expected: PaymentRecord
    new: PaymentRecord | None
    ttl: float


class Emit(NamedTuple):
    event: PaymentEvent


class Recall(NamedTuple):
    """Look a payment up in the settlement journal (``None`` when there is no journal or no row)."""

    key: str


Effect = Verify | Settle | Reserve | Swap | Emit | Recall
Flow = Generator[Effect, Any, T]

#: ``Retry-After`` (seconds) of a 503 for a settlement whose outcome is not known yet.
RETRY_AFTER = 5
SETTLEMENT_PENDING = "settlement_pending"
SETTLEMENT_UNKNOWN = "settlement_unknown"
STORE_UNAVAILABLE = "store_unavailable"
#: A settled payment sent again with a different request than the one it paid for.
PAYMENT_REQUEST_MISMATCH = "payment_request_mismatch"
_JOURNAL_SETTLED = "settled"  # x402_middleware.journal.SETTLED (the journal imports this module's users)
_JOURNAL_IN_FLIGHT = ("settling", "unknown")
_DO_NOT_PAY_AGAIN = (
    f"send the same request with the same payment header again in {RETRY_AFTER} s: it is served once the "
    "settlement is confirmed, and never charged twice. Do not sign a new payment for it."
)


class SettleWhen(Protocol):
    def __call__(self, status: int, /) -> bool: ...


def settle_on_2xx(status: int) -> bool:
    """Default settlement predicate: only successful responses are paid for (x402-conformance R15)."""
    return 200 <= status < 300


class FundsCheck:
    """Asks the facilitator's ``verify`` whether a payer can pay before a paid app runs (balance, nonce, signature).

    Local verification proves a payment is well signed, not that the wallet holds the money; a route that
    is expensive to run (an LLM call) checks first. Positive answers are remembered ``ttl`` seconds per
    (network, asset, payer) and amount, so a busy payer costs one ``verify`` per ``ttl``. Thread-safe;
    one per middleware::

        PaymentMiddleware(app, routes=..., facilitator=..., check_funds=True)
    """

    def __init__(self, ttl: float = 5.0, maxsize: int = 100_000) -> None:
        self._funded: TTLCache[tuple[str, str, str], int] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()

    @staticmethod
    def _key(requirement: PaymentRequirements, payer: str) -> tuple[str, str, str]:
        return requirement.network.caip2, requirement.asset.address.lower(), payer.lower()

    def covers(self, requirement: PaymentRequirements, payer: str) -> bool:
        """Whether ``payer`` was found able to pay at least this requirement's amount moments ago."""
        with self._lock:
            return self._funded.get(self._key(requirement, payer), -1) >= requirement.amount

    def remember(self, requirement: PaymentRequirements, payer: str) -> None:
        with self._lock:
            key = self._key(requirement, payer)
            self._funded[key] = max(self._funded.get(key, 0), requirement.amount)


class PaidFlow:
    """One paid request from its payment header to settlement. Created per request, never shared.

    ``outcome`` moves ``unsent`` -> ``settling`` -> ``settled`` | ``replaced`` (refused, or unknown: 402/503
    sent instead of the app's response), or ``unsent`` -> ``forwarded`` (not settled). The store's record
    follows (see :mod:`x402_middleware.stores`): released only when nothing was attempted, ``settling``
    whenever an attempt's outcome is unknown, ``burned`` on a refusal, so a payment is never served twice,
    never refused after its money moved, and an unfunded signature never runs the app again.
    """

    __slots__ = (
        "_admitted_at",
        "_claim",
        "_fingerprint",
        "_headers",
        "_key",
        "_recovering",
        "_replay_reason",
        "_resumed",
        "_status",
        "_transaction",
        "_ttl",
        "charge",
        "emit",
        "fingerprint",
        "funds",
        "gate",
        "head",
        "outcome",
        "payment",
        "request",
        "requirements",
        "resource",
        "settle_when",
        "usage",
    )

    def __init__(
        self,
        gate: Gate,
        requirements: tuple[PaymentRequirements, ...],
        resource: Callable[[], ResourceInfo],
        *,
        head: bool,
        settle_when: SettleWhen = settle_on_2xx,
        funds: FundsCheck | None = None,
        request: Any = None,
        emit: bool = True,
        fingerprint: Callable[[PaymentPayload], str] | None = None,
        charge: ChargeFunction | None = None,
    ) -> None:
        self.gate = gate
        self.charge = charge  # an upto route's charge computed from the response (x402_middleware.usage)
        #: the actual charge of an upto payment, reported by the app (``x402_middleware.charge``); None otherwise
        self.usage: Usage | None = None
        self._status = 0
        self._headers: Iterable[tuple[Any, Any]] = ()
        # With a journal: the request's fingerprint once the app has read its body (x402_middleware._fingerprint),
        # recorded with the settlement so that a retry of the same request can be served without a new charge.
        self.fingerprint = fingerprint
        self.emit = emit  # lifecycle events are built only for someone listening
        self.request = request  # the framework's request (ASGI scope, WSGI environ, Django request) for events
        self.requirements = requirements
        self.resource = resource
        self.head = head
        self.settle_when = settle_when
        self.funds = funds
        self.outcome = "unsent"
        self.payment: Payment | None = None
        self._key = ""
        self._ttl = 0.0
        self._claim = CLAIMED
        self._resumed = False
        self._replay_reason = ""
        self._fingerprint = ""
        self._transaction = ""
        self._admitted_at = 0.0
        self._recovering: JournalEntry | None = None

    def _event(self, kind: str, transaction: str = "", amount: int | None = None, **kwargs: Any) -> PaymentEvent:
        assert self.payment is not None
        return PaymentEvent(
            kind, self.payment, transaction, amount, request=self.request, fingerprint=self._fingerprint, **kwargs
        )

    def _challenge(self, error: str, message: str | None, **kwargs: Any) -> Answer:
        return self.gate.challenge(self.requirements, self.resource(), error=error, message=message, **kwargs)

    def _retry_later(self, error: str, message: str, transaction: str) -> Answer:
        extra = {"transaction": transaction} if transaction else {}
        return self.gate.error(503, error, message, extra=extra, retry_after=RETRY_AFTER)

    def _followed_elsewhere(self, transaction: str) -> Answer:
        message = "another request is following up this payment's settlement; " + _DO_NOT_PAY_AGAIN
        return self._retry_later(SETTLEMENT_PENDING, message, transaction)

    def admit(self, headers: Iterable[tuple[bytes, bytes]]) -> Flow[Answer | None]:
        """Read, match, verify and reserve the payment. ``None`` means: run the app (``self.payment`` is set)."""
        gate = self.gate
        try:
            payload = gate.read_payment(headers)
            if payload is None and not self.head:
                return gate.challenge(self.requirements, self.resource())
            if self.head:
                # A HEAD response has no content to pay for: a paid handler never runs for it, and a payment
                # sent with it is left untouched.
                message = "HEAD is not served on a paid route; send GET with the payment (a payment sent was not used)"
                challenge = self._challenge(PAYMENT_REQUIRED_ERROR, message)
                return Answer(challenge.status, challenge.headers, b"")
            assert payload is not None
            requirement, local = gate.check(payload, self.requirements)
        except InvalidPaymentError as exc:
            return self._challenge(exc.reason, exc.message, status=exc.status_code)
        verified = False  # by the facilitator
        if local is None:  # contract-wallet signature: only the facilitator can tell
            try:
                remote = yield Verify(payload, requirement)
            except FacilitatorError as exc:
                logger.warning("x402: facilitator verify failed: %s", exc)
                return gate.error(502, "facilitator_error", f"the payment could not be verified: {exc}")
            if not remote.is_valid:
                return self._challenge(remote.invalid_reason or "invalid_payment", remote.invalid_message)
            verified = True

        scheme = find_scheme(requirement.scheme, requirement.network.namespace)
        assert scheme is not None, "a matched and verified payment has a scheme"
        identity = scheme.payment_id(payload, requirement)
        key, payer = identity.key, payload.payer
        ttl = max(identity.expires_at - time.time(), 0) + 60
        try:
            record = yield Reserve(key, ttl)
        except StoreUnavailableError as exc:  # fail closed: a payment that cannot be claimed is not served
            logger.error("x402: payment store unavailable, answering 503: %s", exc)
            message = (
                f"the payment could not be recorded ({exc}); nothing was charged, send it again in {RETRY_AFTER} s"
            )
            return gate.error(503, STORE_UNAVAILABLE, message, retry_after=RETRY_AFTER)
        claim = CLAIMED
        if record is not None:
            if record.state == SETTLING:  # an earlier attempt's outcome is unknown: this request follows it up
                claim = PaymentRecord(PENDING, record.detail)
                if not (yield Swap(key, record, claim, ttl)):
                    return self._followed_elsewhere(record.detail)
                logger.info("x402: following up the settlement of %s (%s)", payer, record.detail or "?")
            elif record.state == SETTLED:
                entry = (yield Recall(key)) if self.fingerprint is not None else None
                if entry is None or entry.state != _JOURNAL_SETTLED or entry.served_at is not None:
                    return self._challenge(scheme.replay_reason, "this payment was already used; sign a new one")
                # Settled, its response never delivered: serve it again if it is the same request (checked in
                # start(), once the app has read the body). Claimed so that one copy at a time does it.
                claim = PaymentRecord(PENDING, record.detail)
                if not (yield Swap(key, record, claim, ttl)):
                    return self._followed_elsewhere(record.detail)
                self._recovering = entry
            elif record.state == BURNED:
                return self._challenge(
                    record.detail or "invalid_payment",
                    f"this payment was refused ({record.detail}) and is never accepted again; "
                    "sign a new one (with enough funds)",
                )
            elif record.detail:  # pending with a transaction: another request follows it up
                return self._followed_elsewhere(record.detail)
            else:
                return self._challenge(
                    PAYMENT_IN_PROGRESS, "this payment is being used by another request; sign a new one or retry later"
                )
        elif not verified and (
            # upto content is served before its settlement: the facilitator checks balance, allowance and a
            # simulation of the maximum's transfer first (x402-protocol.md §3.4), whatever was verified locally.
            requirement.scheme == UPTO or (self.funds is not None and not self.funds.covers(requirement, payer))
        ):
            try:
                remote = yield Verify(payload, requirement)
            except FacilitatorError as exc:
                logger.warning("x402: facilitator verify (funds check) failed: %s", exc)
                yield Swap(key, CLAIMED, None, ttl)
                return gate.error(502, "facilitator_error", f"the payment could not be verified: {exc}")
            if not remote.is_valid:
                reason = remote.invalid_reason or "invalid_payment"
                logger.info("x402: payment of %s refused before the app ran: %s", payer, reason)
                yield Swap(key, CLAIMED, PaymentRecord(BURNED, reason), ttl)
                return self._challenge(reason, remote.invalid_message or "the facilitator refused this payment")
            if self.funds is not None:
                self.funds.remember(requirement, payer)
        self._key, self._ttl, self._claim = key, ttl, claim
        self._admitted_at = time.time()  # a journal row created after this is this request's own
        self._resumed = record is not None and self._recovering is None
        self._replay_reason = scheme.replay_reason
        self.payment = Payment(payer, requirement.amount, requirement, payload)
        if requirement.scheme == UPTO:
            self.usage = Usage(self.payment)
        if self.emit:
            yield Emit(self._event(events.VERIFIED))
        return None

    def start(
        self,
        status: int,
        *,
        client_gone: bool = False,
        complete: bool = True,
        headers: Iterable[tuple[Any, Any]] = (),
    ) -> Flow[Answer | Headers | None]:
        """The app starts its response with ``status``: settle if it is paid for.

        Returns ``None`` (send the app's response untouched), the headers to add to it (settled), or an
        :class:`Answer` to send instead (the app's body is dropped). ``client_gone``: the client disconnected
        before the response started, so nothing would be delivered and nothing is settled.

        An ``upto`` payment is settled with the app's actual charge, so only once the whole response is known:
        ``complete`` says the shell holds all of it (one body message, a Django response that does not
        stream), and ``headers`` are the response's (for a route's ``charge=`` function). A response that is
        not complete is started without settling (headers ``[]``): :meth:`finish` settles it.
        """
        assert self.payment is not None, "admit() must have returned None first"
        payment = self.payment
        if self.head or not self.settle_when(status):
            self.outcome = "forwarded"
            if self.emit:
                yield Emit(self._event(events.NOT_SETTLED, reason="app_status", status=status))
            return None
        payload = payment.payload
        if client_gone:
            self.outcome = "forwarded"
            logger.info("x402: the client of %s left before the response started: not settled", payload.payer)
            if self.emit:
                yield Emit(self._event(events.NOT_SETTLED, reason="client_gone", status=status))
            return None
        if self.fingerprint is not None:
            self._fingerprint = self.fingerprint(payload)
        if self._recovering is not None:
            return (yield from self._recover(self._recovering))
        self._status, self._headers = status, headers
        if self.usage is not None and not complete:
            self.outcome = "metering"
            return []
        return (yield from self._settle())

    def _settle(self, *, served: bool = False) -> Flow[Answer | Headers | None]:
        assert self.payment is not None
        payload, requirement = self.payment.payload, self.payment.requirements
        key, claim, ttl = self._key, self._claim, self._ttl
        if self.usage is not None:  # upto: settle the actual charge (x402-protocol.md §3.4), at most the maximum
            amount = self.usage.final(self._served_view, self.charge)
            requirement = replace(requirement, amount=amount)
            if amount == 0:  # nothing to pay: no transaction
                self.outcome = "settled"
                logger.info("x402: %s's upto payment was charged 0: nothing settled", payload.payer)
                yield Swap(key, claim, PaymentRecord(SETTLED, ""), ttl)
                if self.emit:
                    yield Emit(self._event(events.SETTLED, "", 0))
                result = SettleResult(True, requirement.network.caip2, "", payload.payer, amount=0)
                return self.gate.settlement_headers(result, requirement, payload.x402_version)
        self.outcome = "settling"
        if self.emit:
            yield Emit(self._event(events.SETTLING))
        try:
            result = yield Settle(payload, requirement)
        except FacilitatorError as exc:
            self.outcome = "replaced"
            logger.error(
                "x402: settlement of %s has an unknown outcome%s: %s",
                payload.payer,
                " after its content was served" if served else "",
                exc,
            )
            yield Swap(key, claim, PaymentRecord(SETTLING, claim.detail), ttl)
            if self.emit:
                yield Emit(self._event(events.SETTLEMENT_UNKNOWN, claim.detail, reason=SETTLEMENT_UNKNOWN))
            return self._retry_later(
                SETTLEMENT_UNKNOWN,
                f"the facilitator did not say whether the payment was settled ({exc}); " + _DO_NOT_PAY_AGAIN,
                claim.detail,
            )
        if not result.success and result.error_reason == SETTLEMENT_PENDING:
            self.outcome = "replaced"
            tx = result.transaction or claim.detail
            logger.warning("x402: settlement of %s is pending (transaction %s)", payload.payer, tx or "?")
            yield Swap(key, claim, PaymentRecord(SETTLING, tx), ttl)
            if self.emit:
                yield Emit(self._event(events.SETTLEMENT_UNKNOWN, tx, reason=SETTLEMENT_PENDING))
            return self._retry_later(
                SETTLEMENT_PENDING,
                f"the payment was sent for settlement (transaction "
                f"{tx or 'unknown'}) but is not confirmed yet; " + _DO_NOT_PAY_AGAIN,
                tx,
            )
        if not result.success and self._resumed and result.error_reason == self._replay_reason:
            # Following up our own attempt: the signed payment can be used once and fixes its recipient and value
            # (EVM exact: x402-protocol.md §3.1), so the earlier attempt is what used it: it paid this route.
            logger.warning("x402: the earlier settlement of %s went through (the payment is used)", payload.payer)
            tx = result.transaction or claim.detail
            result = SettleResult(True, requirement.network.caip2, tx, payload.payer, amount=requirement.amount)
        elif not result.success and self.fingerprint is not None and result.error_reason == self._replay_reason:
            # Used already, and this process has no record of it (a restart, a store that forgot): the journal
            # may hold our own settlement whose response never reached the client.
            entry = yield Recall(key)
            if entry is not None and entry.state in _JOURNAL_IN_FLIGHT and entry.created_at < self._admitted_at:
                self.outcome = "replaced"
                yield Swap(key, claim, None, ttl)  # reconciliation on chain decides; the client retries meanwhile
                message = (
                    "this payment's earlier settlement is not reconciled yet (journal: "
                    f"{entry.state}); " + _DO_NOT_PAY_AGAIN
                )
                return self._retry_later(SETTLEMENT_PENDING, message, entry.transaction)
            if entry is not None and entry.state == _JOURNAL_SETTLED and entry.served_at is None:
                return (yield from self._recover(entry))
        if not result.success:
            self.outcome = "replaced"
            reason = result.error_reason or "settlement_failed"
            if served:
                logger.error(
                    "x402: LOST: the settlement of %s for %s of %s's upto payment was refused after the content "
                    "was served (%s); the operator is not paid for it",
                    requirement.amount,
                    requirement.asset.address,
                    payload.payer,
                    reason,
                )
            else:
                logger.info("x402: settlement refused for %s: %s", payload.payer, reason)
            yield Swap(key, claim, PaymentRecord(BURNED, reason), ttl)  # a refused signature is never run again
            if self.emit:
                kind = events.LOST if served else events.SETTLE_FAILED
                yield Emit(self._event(kind, result.transaction, requirement.amount if served else None, reason=reason))
            return self._challenge(
                reason,
                result.error_message or "the payment could not be settled",
                settlement=result,
                x402_version=payload.x402_version,
            )
        self.outcome = "settled"
        self._headers = ()
        logger.info(
            "x402: settled %s of %s from %s on %s in %s",
            requirement.amount,
            requirement.asset.address,
            payload.payer,
            requirement.network.caip2,
            result.transaction,
        )
        yield Swap(key, claim, PaymentRecord(SETTLED, result.transaction), ttl)
        self._transaction = result.transaction
        if result.amount is None and self.usage is not None:  # PAYMENT-RESPONSE.amount: what upto settled
            result = replace(result, amount=requirement.amount)
        amount = result.amount if result.amount is not None else requirement.amount
        if self.emit:
            yield Emit(self._event(events.SETTLED, result.transaction, amount))
        return self.gate.settlement_headers(result, requirement, payload.x402_version)

    def _served_view(self) -> Served:
        assert self.payment is not None
        return Served(self.request, self._status, header_map(self._headers), self.payment)

    def _mismatch(self) -> Answer:
        return self._challenge(
            PAYMENT_REQUEST_MISMATCH,
            "this payment already paid for a different request (method, path, body or payment-identifier); "
            "send that request again with it, or sign a new payment for this one",
        )

    def _recover(self, entry: JournalEntry) -> Flow[Answer | Headers | None]:
        """Serve a settled payment's lost response again, if this is the request it paid for (no new charge)."""
        assert self.payment is not None
        payment, key, claim, ttl = self.payment, self._key, self._claim, self._ttl
        tx = entry.transaction or claim.detail
        if entry.fingerprint != self._fingerprint:
            self.outcome = "replaced"
            yield Swap(key, claim, PaymentRecord(SETTLED, tx), ttl)
            return self._mismatch()
        self.outcome = "settled"
        self._transaction = tx
        logger.warning("x402: serving again a settled payment of %s whose response was lost (%s)", payment.payer, tx)
        yield Swap(key, claim, PaymentRecord(SETTLED, tx), ttl)
        if self.emit:
            yield Emit(self._event(events.RECOVERED, tx, entry.amount))
        result = SettleResult(True, payment.requirements.network.caip2, tx, payment.payer, amount=entry.amount)
        return self.gate.settlement_headers(result, payment.requirements, payment.payload.x402_version)

    def finish(self, *, delivered: bool = True) -> Flow[None]:
        """The request is over (served, failed or abandoned): free a payment nothing was attempted with.

        A follow-up that did not settle, or a settlement interrupted midway, leaves the payment ``settling``
        for the next request to follow up: its money may have moved. ``delivered``: the whole response was
        handed to the server (a settled one is then recorded ``served``, and never served again). An ``upto``
        response that :meth:`start` began without settling is settled here, after the app returned.
        """
        if not self._key:
            return
        if self.outcome == "metering":
            # An upto response started without settling: its content is out, so settle its actual charge now (a
            # refusal is the operator's loss: a lost event). One cut short settles what the app charged so far.
            assert self.usage is not None
            if delivered or self.usage.charged is not None:
                yield from self._settle(served=True)
            else:
                self.outcome = "forwarded"
                logger.warning(
                    "x402: %s's upto stream ended early with no charge reported: nothing settled",
                    self.usage.payment.payer,
                )
                # its content was (partly) served: the signature is never accepted again
                yield Swap(self._key, self._claim, PaymentRecord(BURNED, "interrupted"), self._ttl)
                if self.emit:
                    yield Emit(self._event(events.NOT_SETTLED, reason="interrupted", status=self._status))
                return
        if self.outcome == "settled":
            if delivered and self.emit:
                yield Emit(self._event(events.SERVED, self._transaction))
            return
        if self._recovering is not None:  # nothing was served: the payment stays settled, recoverable
            if self.outcome in ("unsent", "forwarded"):
                yield Swap(self._key, self._claim, PaymentRecord(SETTLED, self._claim.detail), self._ttl)
            return
        if self.outcome not in ("unsent", "forwarded", "settling"):
            return
        unknown = self._resumed or self.outcome == "settling"
        yield Swap(self._key, self._claim, PaymentRecord(SETTLING, self._claim.detail) if unknown else None, self._ttl)
        if self.payment is not None and self.outcome != "forwarded":  # the app failed, or settling was cut short
            kind = events.SETTLEMENT_UNKNOWN if self.outcome == "settling" else events.NOT_SETTLED
            reason = "interrupted" if self.outcome == "settling" else "app_failed"
            if self.emit:
                yield Emit(self._event(kind, self._claim.detail, reason=reason))


def _swap_failed(effect: Swap, exc: StoreUnavailableError) -> bool:
    # The answer stands (a settled payment is never turned into "pay again"); the record stays as it was
    # (pending until its TTL: copies of the payment get 402 payment_in_progress meanwhile, never served).
    new = effect.new.state if effect.new is not None else "released"
    logger.error("x402: payment store unavailable, %s -> %s not recorded: %s", effect.expected.state, new, exc)
    return False


def _perform_sync(
    effect: Effect,
    facilitator: SyncFacilitator,
    store: SyncPaymentStore,
    listeners: Sequence[Listener],
    journal: Journal | None,
) -> Any:
    if isinstance(effect, Emit):
        return events.notify(listeners, effect.event)
    if isinstance(effect, Recall):
        return _recall(journal, effect.key)
    if isinstance(effect, Reserve):
        return store.reserve_sync(effect.key, effect.ttl)
    if isinstance(effect, Swap):
        try:
            return store.swap_sync(effect.key, effect.expected, effect.new, effect.ttl)
        except StoreUnavailableError as exc:
            return _swap_failed(effect, exc)
    if isinstance(effect, Settle):
        return facilitator.settle(effect.payload, effect.requirement)
    return facilitator.verify(effect.payload, effect.requirement)


async def _perform_async(
    effect: Effect,
    facilitator: Facilitator,
    store: PaymentStore,
    listeners: Sequence[Listener],
    journal: Journal | None,
) -> Any:
    if isinstance(effect, Emit):
        return await events.anotify(listeners, effect.event)
    if isinstance(effect, Recall):
        return await asyncio.to_thread(_recall, journal, effect.key)
    if isinstance(effect, Reserve):
        return await store.reserve(effect.key, effect.ttl)
    if isinstance(effect, Swap):
        try:
            return await store.swap(effect.key, effect.expected, effect.new, effect.ttl)
        except StoreUnavailableError as exc:
            return _swap_failed(effect, exc)
    if isinstance(effect, Settle):
        return await facilitator.settle(effect.payload, effect.requirement)
    return await facilitator.verify(effect.payload, effect.requirement)


def _recall(journal: Journal | None, key: str) -> JournalEntry | None:
    if journal is None:
        return None
    try:
        return journal.get(key)
    except Exception:  # noqa: BLE001 - an unreadable journal recovers nothing: the payment is treated as used
        logger.exception("x402: the settlement journal could not be read for %s", key)
        return None


def run_sync(
    flow: Flow[T],
    facilitator: SyncFacilitator,
    store: SyncPaymentStore,
    listeners: Sequence[Listener] = (),
    journal: Journal | None = None,
) -> T:
    """Drive a flow with blocking calls (WSGI, sync Django)."""
    try:
        effect = next(flow)
        while True:
            try:
                result = _perform_sync(effect, facilitator, store, listeners, journal)
            except (FacilitatorError, StoreUnavailableError) as exc:
                effect = flow.throw(exc)
            else:
                effect = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(
    flow: Flow[T],
    facilitator: Facilitator,
    store: PaymentStore,
    listeners: Sequence[Listener] = (),
    journal: Journal | None = None,
) -> T:
    """Drive a flow with awaits (ASGI, async Django)."""
    try:
        effect = next(flow)
        while True:
            try:
                result = await _perform_async(effect, facilitator, store, listeners, journal)
            except (FacilitatorError, StoreUnavailableError) as exc:
                effect = flow.throw(exc)
            else:
                effect = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class ReadBody(NamedTuple):
    """Decision effect: read the request body for pricing and send back the parsed JSON (or ``None``).

    The shell throws :class:`UnpriceableRequestError` back in for a body it refuses (too large, too deep).
    """


class AwaitPrice(NamedTuple):
    """Decision effect: await an async price function's requirements and send them back (exceptions thrown in)."""

    price: Awaitable[Quoted]


@dataclass(frozen=True, slots=True)
class Paid:
    """The decision for a paid request: the route and what it costs now."""

    route: PaidRoute
    requirements: tuple[PaymentRequirements, ...]


Decision = Generator[ReadBody | AwaitPrice, Any, "Answer | Paid | None"]


def decide(
    gate: Gate,
    route: PaidRoute,
    params: dict[str, str],
    view: Callable[[dict[str, str], Any], PaymentRequest],
    *,
    allow_async: bool = True,
) -> Decision:
    """The one decision every shell makes for a request to a paid route (``gate.find`` matched it; a request it
    does not match passes through without building anything): pass it through anyway (``None``, free this
    time), answer it instead of the app (an :class:`Answer`: it cannot be priced), or make it pay (:class:`Paid`).

    ``view(path_params, body)`` builds the pricing view of the request. The shell performs the effects: it
    reads the body (:class:`ReadBody`) and awaits async prices (:class:`AwaitPrice`), e.g. with
    :func:`decide_sync` or :func:`decide_async`::

        route, params = gate.find("POST", "/v1/chat")
        outcome = decide_sync(decide(gate, route, params, view, allow_async=False), read_body)
    """
    if route.fixed is not None:
        return Paid(route, route.fixed)
    try:
        body = (yield ReadBody()) if route.price_body else None
        priced = gate.price(route, view(params, body), allow_async=allow_async)
        quoted = priced if isinstance(priced, Quoted) else (yield AwaitPrice(priced))
    except (PricingError, UnpriceableRequestError) as exc:
        return pricing_failure(route, exc)
    if not quoted.requirements:
        return None
    if quoted.description is not None:  # the policy described this request (Priced): its 402 says so
        route = replace(route, description=quoted.description)
    return Paid(route, quoted.requirements)


async def decide_async(decision: Decision, read_body: Callable[[], Awaitable[Any]]) -> Answer | Paid | None:
    """Drive :func:`decide` in an awaiting shell (ASGI, async Django): ``await read_body()`` may raise
    :class:`UnpriceableRequestError` for a body it refuses; anything else it raises propagates."""
    try:
        step = next(decision)
        while True:
            try:
                value = await read_body() if isinstance(step, ReadBody) else await step.price
            except (PricingError, UnpriceableRequestError) as exc:  # a refused body, or the policy's error
                step = decision.throw(exc)
            else:
                step = decision.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def decide_sync(decision: Decision, read_body: Callable[[], Any]) -> Answer | Paid | None:
    """Drive :func:`decide` where nothing is awaited (WSGI, sync Django): ``read_body()`` may raise
    :class:`UnpriceableRequestError` for a body it refuses."""
    try:
        step = next(decision)
        while True:
            assert isinstance(step, ReadBody), "a blocking shell prices synchronously (allow_async=False)"
            try:
                body = read_body()
            except UnpriceableRequestError as exc:
                step = decision.throw(exc)
            else:
                step = decision.send(body)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def pricing_failure(route: PaidRoute, exc: X402Error) -> Answer:
    """The answer when a route cannot be priced: 400 for the client's input, 500 (logged) for a policy bug."""
    if isinstance(exc, UnpriceableRequestError):
        return Gate.error(exc.status_code, exc.reason, exc.message)
    logger.error("x402: the price function of %s failed: %s", route.pattern.path, exc, exc_info=exc)
    # The exception text stays in the log: it may describe the server's internals.
    return Gate.error(
        500, "pricing_error", "the price of this request could not be computed (a server-side pricing bug; see its log)"
    )


def private_cache_control(value: str | None) -> str | None:
    """A paid response must not be served from a shared cache: the new ``Cache-Control``, or ``None`` to keep it."""
    if value is None or not value.strip():
        return "private"
    if "private" in value or "no-store" in value:
        return None
    return f"{value}, private"


def parse_json_body(raw: bytes) -> Any:
    """The parsed JSON body a pricing policy sees, or ``None`` when it is empty or not JSON.

    Raises :class:`UnpriceableRequestError` (400) when the JSON nests too deeply to parse safely.
    """
    if not raw:
        return None
    try:
        return _json.loads(raw)
    except JSONTooDeepError as exc:
        raise UnpriceableRequestError("request_body_too_deep", str(exc)) from None
    except ValueError:  # UnicodeDecodeError included
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
