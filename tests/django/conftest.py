from __future__ import annotations

from tests._django import setup_django

setup_django()
