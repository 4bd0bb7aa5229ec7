"""An x402 facilitator HTTP server over any :class:`Facilitator` (``POST /verify``, ``POST /settle``, ``GET /supported``).

Request and response shapes are the official ones (``../shared/docs/x402-protocol.md`` §5), for v1 and v2,
so any x402 resource server -- including the official SDK's -- can use it::

    app = facilitator_app(OnChainFacilitator(rpc_url, [key], network="eip155:8453"))
    # uvicorn.run(app, host="127.0.0.1", port=4402)

A malformed request gets 400 ``{"error", "message"}``; an unreachable chain 502; a refused
payment is a normal 200 answer with ``isValid``/``success`` false and the reason.

The facilitator pays gas for every settlement, so a public one is an open tap: give it a
``bearer_token`` (resource servers send ``Authorization: Bearer <token>``, e.g.
``HTTPFacilitator(url, headers={"Authorization": "Bearer ..."})``) and/or the ``pay_to`` addresses
it may settle to; other requests get 401 / a ``pay_to_not_allowed`` refusal.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _json
from .._exceptions import FacilitatorError, InvalidPaymentError, JSONTooDeepError, MalformedPaymentError
from ..models import (
    PaymentPayload,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
    parse_payment_payload,
    parse_requirements,
)
from ._protocol import Facilitator

logger = logging.getLogger("x402_middleware.facilitator")
MAX_BODY = 64 * 1024
PAY_TO_NOT_ALLOWED = "pay_to_not_allowed"


def _address_key(address: str) -> str:
    """An address as compared: hex (EVM) case-insensitively, base58 (Solana) exactly, as its case is meaningful."""
    return address.lower() if address[:2] in ("0x", "0X") else address


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


async def _read(request: Request) -> tuple[PaymentPayload, PaymentRequirements, int]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise MalformedPaymentError(f"request body is larger than {MAX_BODY} bytes")
    try:
        data = _json.loads(body)
    except JSONTooDeepError as exc:
        raise MalformedPaymentError(f"request body: {exc}") from None
    except ValueError:  # UnicodeDecodeError included
        raise MalformedPaymentError(
            "request body must be JSON: {x402Version, paymentPayload, paymentRequirements}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedPaymentError("request body must be a JSON object")
    payload_obj = data.get("paymentPayload")
    if not isinstance(payload_obj, dict):
        raise MalformedPaymentError("paymentPayload must be an object")
    payload = parse_payment_payload(payload_obj)
    version = data.get("x402Version", payload.x402_version)
    if version != payload.x402_version:
        raise MalformedPaymentError("x402Version does not match paymentPayload.x402Version")
    return payload, parse_requirements(data.get("paymentRequirements"), payload.x402_version), payload.x402_version


def facilitator_app(
    facilitator: Facilitator, *, bearer_token: str | None = None, pay_to: Iterable[str] | None = None
) -> ASGIApp:
    """The facilitator HTTP API as an ASGI app.

    ``bearer_token``: required on ``/verify``, ``/settle`` and ``/supported`` (``/health`` stays open).
    ``pay_to``: the only recipients it settles to (0x addresses case-insensitively); ``None`` allows any.
    """
    allowed = None if pay_to is None else frozenset(_address_key(a) for a in pay_to)

    def refused(requirements: PaymentRequirements) -> str | None:
        if allowed is not None and _address_key(requirements.pay_to) not in allowed:
            return f"this facilitator does not settle to {requirements.pay_to}"
        return None

    async def verify(request: Request) -> JSONResponse:
        try:
            payload, requirements, _ = await _read(request)
        except MalformedPaymentError as exc:
            return _error(400, exc.reason, exc.message)
        except InvalidPaymentError as exc:
            return JSONResponse(VerifyResult(False, exc.reason, exc.message).to_wire())
        if (why := refused(requirements)) is not None:
            return JSONResponse(VerifyResult(False, PAY_TO_NOT_ALLOWED, why, payload.payer).to_wire())
        try:
            result = await facilitator.verify(payload, requirements)
        except FacilitatorError as exc:
            logger.warning("verify failed: %s", exc)
            return _error(502, "unexpected_verify_error", str(exc))
        return JSONResponse(result.to_wire())

    async def settle(request: Request) -> JSONResponse:
        try:
            payload, requirements, version = await _read(request)
        except MalformedPaymentError as exc:
            return _error(400, exc.reason, exc.message)
        except InvalidPaymentError as exc:
            return JSONResponse(SettleResult(False, "", "", None, exc.reason, exc.message).to_wire())
        if (why := refused(requirements)) is not None:
            return JSONResponse(SettleResult(False, "", "", payload.payer, PAY_TO_NOT_ALLOWED, why).to_wire())
        try:
            result = await facilitator.settle(payload, requirements)
        except FacilitatorError as exc:
            logger.warning("settle failed: %s", exc)
            return _error(502, "unexpected_settle_error", str(exc))
        network = requirements.network.wire_v1 if version == 1 else requirements.network.caip2
        logger.info(
            "settle %s payer=%s tx=%s reason=%s",
            "ok" if result.success else "refused",
            result.payer,
            result.transaction,
            result.error_reason,
        )
        return JSONResponse(result.to_wire(network))

    async def supported(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await facilitator.supported())
        except FacilitatorError as exc:
            return _error(502, "unexpected_error", str(exc))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes: list[Any] = [
        Route("/verify", verify, methods=["POST"]),
        Route("/settle", settle, methods=["POST"]),
        Route("/supported", supported, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    return app if bearer_token is None else _BearerAuth(app, bearer_token)


class _BearerAuth:
    """Pure ASGI: every path but ``/health`` needs ``Authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("bearer_token must not be empty")
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = _error(401, "unauthorized", "send Authorization: Bearer <token> (the facilitator's --token)")
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
