"""Facilitator plug-ins: where payments are verified and settled."""

from __future__ import annotations

from ._protocol import Facilitator, SyncFacilitator
from .remote import DEFAULT_FACILITATOR_URL, HTTPFacilitator, SyncHTTPFacilitator

__all__ = ["DEFAULT_FACILITATOR_URL", "Facilitator", "HTTPFacilitator", "SyncFacilitator", "SyncHTTPFacilitator"]
