"""x402 payments for Django, sync (WSGI) and async (ASGI).

``settings.py``::

    INSTALLED_APPS = [..., "x402_middleware.django"]          # system checks for the X402 setting
    MIDDLEWARE = [..., "x402_middleware.django.PaymentMiddleware"]
    X402 = {"ROUTES": {"GET /api/weather": "$0.001"}, "PAY_TO": "0xYourAddress", "NETWORK": "eip155:84532",
            "FACILITATOR_URL": "https://x402.org/facilitator"}

In a view, ``request.x402_payment`` is the verified :class:`~x402_middleware.Payment`.
"""

from __future__ import annotations

from typing import Any

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('x402_middleware.django needs Django: pip install "x402_middleware[django]"') from exc

__all__ = ["PaymentMiddleware"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): Django imports this package while loading INSTALLED_APPS, before the app registry is ready.
    if name == "PaymentMiddleware":
        from .middleware import PaymentMiddleware

        return PaymentMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
