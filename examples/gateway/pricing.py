"""The seam between the gateway and a payment layer: what an inference request costs.

:func:`price_of` is framework-free. :func:`x402_price_policy` adapts it to
``x402_middleware``'s pricing-policy callable (``RouteConfig(price=..., price_body=True)``)::

    policy = x402_price_policy(gateway)
    routes = {f"POST {p}": RouteConfig(price=policy, price_body=True, description="AI API call")
              for p in INFERENCE_PATHS}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .billing import UsageBilling
from .errors import GatewayError
from .media.requests import MediaCall, MediaQuote
from .quote import Quote
from .service import Gateway, Prepared


def price_of(gateway: Gateway, path: str, body: Any) -> Quote | None:
    """The quote for an inference request, or ``None`` when the app will refuse the body by itself.

    ``None`` is only returned for bodies that the app's handler rejects with the same
    error *before* any upstream call (unknown model, bad ``max_tokens``, ...), because
    both run :meth:`Gateway.prepare`. A free model gives a :class:`Quote` whose
    ``amount`` is ``None``.
    """
    try:
        return gateway.quote(path, body)
    except GatewayError:
        return None


def x402_price_policy(gateway: Gateway, billing: UsageBilling | None = None) -> Callable[[Any], Any]:
    """A pricing policy for ``x402_middleware.PaymentMiddleware``: ``Priced(TokenAmount(atomic), description)``,
    or ``None`` (free). With ``billing``, a chat call of a usage-billed model offers ``exact`` and ``upto`` (the
    quote as maximum; :mod:`.billing`).

    Inside :func:`~.app.create_app` the policy gets the request's :class:`~.service.Prepared` (made once by
    :class:`~.prepare.PrepareOnce`, shared with the handler); on its own, the middleware's parsed JSON body.
    A request whose JSON body the middleware could not read (not JSON, or over its pricing
    size cap) is refused with ``UnpriceableRequestError`` (400) rather than served unpriced.
    """
    from x402_middleware import Priced, TokenAmount, UnpriceableRequestError  # here: optional for the gateway

    def policy(request: Any) -> Any:
        body = request.body
        if isinstance(body, (Prepared, MediaCall)):  # parsed and quoted once by PrepareOnce (the app's own layer)
            quote: Quote | MediaQuote | None = body.quote
        elif isinstance(body, Mapping):  # the policy used on its own, over the middleware's parsed body
            quote = price_of(gateway, request.path, body)
        else:
            raise UnpriceableRequestError(
                "invalid_request_body", "send a JSON object body (within the payment layer's pricing size cap)"
            )
        if quote is None or quote.amount is None:
            return None
        # The 402 says what is bought, e.g. "GPT-5.5 API call (~17 input, 8192 max output tokens)"; the Python
        # SDK warns when that max is below the max_tokens it asked for (blockrun-clients.md §2.3).
        if billing is not None and isinstance(body, Prepared):
            return Priced(billing.price(body.call.model, quote.amount), quote.description)
        return Priced(TokenAmount(quote.amount), quote.description)

    return policy


def describe(gateway: Gateway, path: str, body: Any) -> str:
    """The ASCII ``resource.description`` of a call, e.g. ``GPT-5.5 API call (~17 input, 8192 max output tokens)``."""
    quote = price_of(gateway, path, body)
    return quote.description if quote is not None else "AI API call"
