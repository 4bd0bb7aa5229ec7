"""Match a payment to the requirement it pays, then verify it locally with its scheme: no facilitator round trip.

Matching is the same for every scheme (x402 v2 ``accepted`` echo, v1 scheme + network); verification is
the scheme's (:meth:`~x402_middleware.schemes.PaymentScheme.verify`), in the official facilitator's order
with its reason strings, or ``None`` when only a facilitator can tell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .models import PaymentPayload, PaymentRequirements, VerifyResult
from .schemes import find_scheme

# Reason strings ([py] facilitator 2.25; treat as opaque on the wire).
UNSUPPORTED_SCHEME = "unsupported_scheme"
NO_MATCHING_REQUIREMENTS = "No matching payment requirements"


def match_requirements(
    payload: PaymentPayload, candidates: Sequence[PaymentRequirements]
) -> PaymentRequirements | None:
    """Find the requirement a payment pays, or ``None``.

    v2 echoes the chosen requirement in ``accepted``: its core fields must equal
    one we offer now (so a dynamic price must be the same on the retry), and our
    ``extra`` keys must be a subset of its ``extra`` ([py] 2.25 rule). v1 names
    only scheme and network; the value is checked during verification.
    """
    acc = payload.accepted
    if acc is not None:
        extra = acc.get("extra")
        for req in candidates:
            if (
                acc.get("scheme") == req.scheme
                and acc.get("network") == req.network.caip2
                and acc.get("amount") == str(req.amount)
                and _same_address(acc.get("asset"), req.asset.address)
                and _same_address(acc.get("payTo"), req.pay_to)
                and acc.get("maxTimeoutSeconds") == req.max_timeout_seconds
                and isinstance(extra, dict)
                and all(extra.get(k) == v for k, v in req.wire_extra().items())
            ):
                return req
        return None
    same_network = [
        r for r in candidates if r.scheme == payload.scheme and payload.network in (r.network.wire_v1, r.network.caip2)
    ]
    signed = payload.data.amount if payload.data is not None else None
    for req in same_network:  # several assets on one network: prefer the one whose price the payer signed
        if req.amount == signed:
            return req
    return same_network[0] if same_network else None


def _same_address(value: object, address: str) -> bool:
    return isinstance(value, str) and value.lower() == address.lower()


def verify_locally(
    payload: PaymentPayload, requirement: PaymentRequirements, *, now: int | None = None
) -> VerifyResult | None:
    """Verify a matched payment with its scheme; ``None`` when only a facilitator can tell (e.g. a contract wallet)."""
    scheme = find_scheme(requirement.scheme, requirement.network.namespace)
    if scheme is None or payload.data is None:
        return VerifyResult(
            False, UNSUPPORTED_SCHEME, f"scheme {payload.scheme!r} is not supported here", payload.payer
        )
    return scheme.verify(payload, requirement, int(time.time()) if now is None else now)
