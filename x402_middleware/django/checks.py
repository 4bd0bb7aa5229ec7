"""Django system checks for the ``X402`` setting (``manage.py check``), registered in :class:`~.apps.X402Config`.

Ids are stable: ``x402.E001`` ... ``x402.E008`` and ``x402.W001``/``W002`` (see :mod:`.conf`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from . import conf

MIDDLEWARE_PATH = "x402_middleware.django.PaymentMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.X402``; one message per problem."""
    raw = conf.raw_setting()
    messages: list[CheckMessage] = [Error(p.message, hint=p.hint, id=p.id) for p in conf.problems(raw)]
    if (
        isinstance(raw, Mapping)
        and not any(m.id == conf.E_FACILITATOR for m in messages)
        and not raw.get("FACILITATOR_URL")
    ):
        has_async, has_sync = raw.get("FACILITATOR") is not None, raw.get("SYNC_FACILITATOR") is not None
        if has_async != has_sync:
            served = "ASGI" if has_async else "WSGI"
            messages.append(
                Warning(
                    f"X402 has only {'an async' if has_async else 'a blocking'} facilitator: payments work under {served} only",
                    hint="Set both FACILITATOR (ASGI) and SYNC_FACILITATOR (WSGI), or FACILITATOR_URL for both.",
                    id=conf.W_ONE_MODE,
                )
            )
    if MIDDLEWARE_PATH not in (getattr(settings, "MIDDLEWARE", None) or ()):
        messages.append(
            Warning(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: no route is charged for",
                hint=f"Add '{MIDDLEWARE_PATH}' to MIDDLEWARE.",
                id=conf.W_NO_MIDDLEWARE,
            )
        )
    return messages
