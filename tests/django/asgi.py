"""ASGI entry point of the Django test project (served by uvicorn in tests)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
application = get_asgi_application()
