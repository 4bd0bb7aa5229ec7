"""The gateway with x402 payment composed in: ``create_paid_app(config, pay_to=..., facilitator=...)``.

Every inference route (``/v1/chat/completions``, ``/v1/messages`` and their ``/api/v1`` twins) is priced per
call by :func:`~.pricing.x402_price_policy` from the JSON body (``price_body=True``: the middleware peeks at
the body for the quote and replays it to the app untouched). Free models never see a 402. The middleware
settles when the handler starts a 2xx response, which it only does once the upstream accepted the call
(for streams: before the first SSE byte), so callers pay only for successful calls. In usage billing
(:mod:`.billing`) a caller paying with ``upto`` is charged the usage the upstream reported, when the response is
complete::

    from x402_middleware import HTTPFacilitator
    app = create_paid_app(GatewayConfig(), pay_to="0xYourAddress", network="eip155:8453",
                          facilitator=HTTPFacilitator("https://x402.org/facilitator"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from starlette.types import ASGIApp

from x402_middleware import PaymentMiddleware, RouteConfig
from x402_middleware.facilitator import Facilitator
from x402_middleware.journal import Journal
from x402_middleware.stores import PaymentStore

from .app import Wrap, create_app
from .billing import USAGE, UsageBilling, usage_charge
from .config import GatewayConfig
from .pricing import x402_price_policy
from .rejections import BlockRunRejectionCodes
from .requestlog import record_payment
from .service import INFERENCE_PATHS, MEDIA_PATHS, Gateway

#: The route's ``resource.description``, used only when the policy gives none: it describes each call itself
#: (``Priced``: "GPT-5.5 API call (~17 input, 8192 max output tokens)"). ASCII: the TypeScript SDK signs with
#: ``btoa``, which rejects > U+00FF.
DESCRIPTION = "AI API call"
#: ``maxTimeoutSeconds`` offered for an async media job (blockrun-clients.md §3.7: VideoClient.MAX_TIMEOUT_SECONDS).
ASYNC_JOB_TIMEOUT = 600


def payment_layer(
    *,
    pay_to: str | Mapping[str, str],
    facilitator: Facilitator,
    network: str | Sequence[str] = "eip155:8453",
    store: PaymentStore | None = None,
    max_timeout_seconds: int = 300,
    check_funds: bool = True,
    journal: Journal | None = None,
    facilitator_address: str | None = None,
) -> Wrap:
    """A ``wrap`` for :func:`~.app.create_app` that puts :class:`PaymentMiddleware` around the inference routes.

    ``check_funds`` (on by default: an upstream call costs the operator money) asks the facilitator whether the
    payer can pay before the upstream is called, so a well-signed payment from an empty wallet never reaches it.
    Usage billing (the gateway's ``billing``, a model's catalog ``settle``, see :mod:`.billing`) offers ``upto``
    too, naming ``facilitator_address`` (the facilitator's settling address, as its ``/supported`` lists it), and
    settles each such call from the upstream's reported usage once its response is complete.
    The middleware's lifecycle events go to :func:`~.requestlog.record_payment`: the request log line and the
    payment metrics are built from them. ``journal`` records every payment durably and serves a settled call whose
    response was lost again, for the same request, without a second charge.
    """

    def wrap(app: ASGIApp, gateway: Gateway) -> ASGIApp:
        networks = (network,) if isinstance(network, str) else tuple(network)
        billing = UsageBilling(gateway.config.billing, networks, facilitator_address)
        usage = any(billing.mode(m) == USAGE for m in gateway.catalog)
        if usage and facilitator_address is None:
            raise ValueError(
                "usage billing offers x402 upto, which names the facilitator that settles it: give "
                "facilitator_address= (the address its /supported lists for upto)"
            )
        policy = x402_price_policy(gateway, billing if usage else None)
        routes = {
            f"POST {path}": RouteConfig(
                price=policy,
                price_body=True,
                description=DESCRIPTION,
                # BlockRun's VideoClient signs for at least 600 s (its polls replay the signature), so offer that.
                max_timeout_seconds=max(max_timeout_seconds, ASYNC_JOB_TIMEOUT) if kind == "video" else None,
                charge=usage_charge if usage and kind == "chat" else None,
            )
            for path, kind in (*((p, "chat") for p in INFERENCE_PATHS), *MEDIA_PATHS.items())
        }
        # BlockRun's SDKs tell a replay from an unfunded/invalid payment by the 402 body's ``code``.
        return BlockRunRejectionCodes(
            PaymentMiddleware(
                app,
                routes=routes,
                pay_to=pay_to,
                network=network,
                facilitator=facilitator,
                store=store,
                max_timeout_seconds=max_timeout_seconds,
                check_funds=check_funds,
                max_pricing_body=gateway.config.max_body_bytes,
                listeners=[record_payment],
                journal=journal,
            )
        )

    return wrap


def create_paid_app(
    config: GatewayConfig | None = None,
    *,
    pay_to: str | Mapping[str, str],
    facilitator: Facilitator,
    network: str | Sequence[str] = "eip155:8453",
    store: PaymentStore | None = None,
    gateway: Gateway | None = None,
    journal: Journal | None = None,
    facilitator_address: str | None = None,
) -> Starlette:
    """The gateway app with x402 payment on every paid model's inference calls (see :func:`payment_layer`)."""
    return create_app(
        config,
        gateway=gateway,
        wrap=payment_layer(
            pay_to=pay_to,
            facilitator=facilitator,
            network=network,
            store=store,
            journal=journal,
            facilitator_address=facilitator_address,
        ),
    )
