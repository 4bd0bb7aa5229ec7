"""The Django app: add ``"x402_middleware.django"`` to ``INSTALLED_APPS`` to get the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class X402Config(AppConfig):
    """Registers the ``X402`` setting checks (``x402.E001`` ...) when Django starts."""

    name = "x402_middleware.django"
    label = "x402_middleware"
    verbose_name = "x402 payments"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_settings

        checks.register(check_settings, "x402")
