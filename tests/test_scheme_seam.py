"""A scheme registered from outside the package goes through the whole flow: the seam needs no core edits.

The toy scheme lives only here: its own namespace (``toy``), network, asset and address format, a payload
signed with a toy rule, and a toy facilitator double. It gets a 402 offer, a payment, local verification,
at-most-once, settlement and lifecycle events.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests._payments import decode, encode
from x402_middleware import ConfigurationError, MalformedPaymentError, PaymentMiddleware, RouteConfig
from x402_middleware.events import PaymentEvent
from x402_middleware.models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult, parse_requirements
from x402_middleware.networks import Asset, Network, register_network
from x402_middleware.schemes import PaymentId, find_scheme, register_scheme

pytestmark = pytest.mark.anyio
TOY_NET = "toy:1"


@dataclass(frozen=True)
class ToyPayload:
    payer: str
    amount: int
    nonce: str
    sig: str


class ToyScheme:
    scheme = "toy"
    namespace = "toy"
    address_format = "a toy name (letters only)"
    replay_reason = "toy_replay"

    def valid_address(self, value: str) -> bool:
        return value.isalpha()

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        return {"toyVersion": "1"}

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        if not self.valid_address(pay_to):
            raise MalformedPaymentError("payTo must be a toy name")
        return Asset(asset, "Toy", "1", 2), pay_to, {k: v for k, v in extra.items() if k != "toyVersion"}

    def parse_payload(self, payload: Mapping[str, Any]) -> ToyPayload:
        fields = [payload.get(k) for k in ("payer", "amount", "nonce", "sig")]
        if not all(isinstance(f, str) for f in fields) or not str(payload["amount"]).isdigit():
            raise MalformedPaymentError("a toy payload has string payer, amount (digits), nonce and sig")
        return ToyPayload(payload["payer"], int(payload["amount"]), payload["nonce"], payload["sig"])

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult | None:
        data: ToyPayload = payment.data
        if data.amount != requirement.amount:
            return VerifyResult(False, "invalid_toy_amount", "wrong amount", data.payer)
        if data.sig != f"signed:{data.payer}:{data.nonce}:{data.amount}:{requirement.pay_to}":
            return VerifyResult(False, "invalid_toy_signature", "bad toy signature", data.payer)
        return VerifyResult(True, payer=data.payer)

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        return PaymentId(f"toy:{payment.data.payer}:{payment.data.nonce}", 4_000_000_000.0)

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        payer, nonce = key.decode(), secrets.token_hex(8)
        sig = f"signed:{payer}:{nonce}:{requirement.amount}:{requirement.pay_to}"
        return {"payer": payer, "amount": str(requirement.amount), "nonce": nonce, "sig": sig}


class ToyFacilitator:
    def __init__(self) -> None:
        self.settled: list[PaymentPayload] = []

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return VerifyResult(True, payer=payload.payer)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        self.settled.append(payload)
        return SettleResult(True, TOY_NET, f"toytx-{payload.data.nonce}", payload.payer, amount=requirements.amount)

    async def supported(self) -> dict[str, Any]:
        return {"kinds": [{"x402Version": 2, "scheme": "toy", "network": TOY_NET}]}


register_network(Network(TOY_NET, asset=Asset("TOYTOKEN", "Toy", "1", 2, "TOY")))
register_scheme(ToyScheme())


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"toy content"})


def _paid_app(fac: ToyFacilitator, events: list[PaymentEvent]) -> PaymentMiddleware:
    route = RouteConfig(price="$0.05", networks=[TOY_NET], scheme="toy")
    return PaymentMiddleware(
        _app, routes={"GET /toy": route}, pay_to="alice", network=TOY_NET, facilitator=fac, listeners=events.append
    )


async def test_a_scheme_registered_from_a_test_module_goes_through_the_whole_flow() -> None:
    fac, events = ToyFacilitator(), list[PaymentEvent]()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_paid_app(fac, events)), base_url="http://t") as c:
        challenge = decode((await c.get("/toy")).headers["payment-required"])
        offer = challenge["accepts"][0]
        assert offer == {
            "scheme": "toy",
            "network": TOY_NET,
            "amount": "5",  # $0.05 in a 2-decimal token
            "asset": "TOYTOKEN",
            "payTo": "alice",
            "maxTimeoutSeconds": 300,
            "extra": {"toyVersion": "1"},
        }
        requirement = parse_requirements(offer, 2)  # the scheme parses the wire requirement
        scheme = find_scheme("toy", "toy")
        assert scheme is not None
        inner = scheme.sign(requirement, b"bob", 0)
        header = encode({"x402Version": 2, "resource": challenge["resource"], "accepted": offer, "payload": inner})
        paid = await c.get("/toy", headers={"PAYMENT-SIGNATURE": header})
        replay = await c.get("/toy", headers={"PAYMENT-SIGNATURE": header})
        forged = {**inner, "sig": "forged"}
        bad = encode({"x402Version": 2, "resource": challenge["resource"], "accepted": offer, "payload": forged})
        refused = await c.get("/toy", headers={"PAYMENT-SIGNATURE": bad})
    assert paid.status_code == 200 and paid.content == b"toy content"
    assert decode(paid.headers["payment-response"])["transaction"] == f"toytx-{inner['nonce']}"
    assert replay.status_code == 402 and replay.json()["error"] == "toy_replay"
    assert refused.status_code == 402 and refused.json()["error"] == "invalid_toy_signature"
    assert len(fac.settled) == 1 and fac.settled[0].payer == "bob"
    assert [e.kind for e in events] == ["verified", "settling", "settled", "served"]
    assert events[-2].amount == 5 and events[-2].transaction == f"toytx-{inner['nonce']}"


def test_a_route_needs_a_registered_scheme_and_an_address_of_its_chain() -> None:
    fac = ToyFacilitator()
    with pytest.raises(ConfigurationError, match="no 'nope' scheme is registered for toy networks"):
        PaymentMiddleware(
            _app,
            routes={"GET /x": RouteConfig(price="$1", scheme="nope")},
            pay_to="alice",
            network=TOY_NET,
            facilitator=fac,
        )
    with pytest.raises(ConfigurationError, match="is not a toy name"):
        PaymentMiddleware(
            _app,
            routes={"GET /x": RouteConfig(price="$1", scheme="toy")},
            pay_to="bob42",
            network=TOY_NET,
            facilitator=fac,
        )
