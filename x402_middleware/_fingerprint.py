"""Which request a payment paid for: the binding that lets a settled-but-unserved payment be served again.

A payment whose settlement went through but whose response never reached the client (the process was
killed, the connection dropped mid-body) is *recovered*: the same payment with the same request is served
again without a second charge. "The same request" is its fingerprint: method, path, query and a SHA-256 of
the body the app read, or the client's own idempotency key when it sends the x402 ``payment-identifier``
extension (x402-protocol.md §2, extensions: ``info.id``, 16-128 characters of ``[A-Za-z0-9_-]``)::

    digest = BodyDigest()
    ...the app reads the body through digest.update(chunk)...
    fingerprint = request_fingerprint("POST", "/v1/chat", "", digest.hexdigest(), payload)

The body is hashed as the app reads it (nothing is buffered); a body the app never reads is not part of
the fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import IO, Any

from ._types import Message, Receive
from .models import PaymentPayload

#: The x402 extension a client uses to name its request (its idempotency key).
PAYMENT_IDENTIFIER = "payment-identifier"
_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")

#: What a v2 402 declares so that clients add an id (``required: false``: a payment without one is served).
PAYMENT_IDENTIFIER_DECLARATION: dict[str, Any] = {
    "info": {"required": False},
    "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "required": {"type": "boolean"},
            "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"},
        },
        "required": ["required"],
    },
}


def payment_identifier(payload: PaymentPayload) -> str | None:
    """The client's ``payment-identifier`` id in a v2 payload, or ``None`` (absent or not a valid id)."""
    extensions = payload.raw.get("extensions")
    if not isinstance(extensions, dict):
        return None
    extension = extensions.get(PAYMENT_IDENTIFIER)
    info = extension.get("info") if isinstance(extension, dict) else None
    value = info.get("id") if isinstance(info, dict) else None
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def request_fingerprint(method: str, path: str, query: str, body_digest: str, payload: PaymentPayload) -> str:
    """The binding recorded with a settled payment: ``id:<payment-identifier>`` or ``req:<sha256 hex>``.

    >>> from x402_middleware.models import PaymentPayload
    >>> p = PaymentPayload(2, "exact", "eip155:8453", None, {"extensions": {"payment-identifier": {"info": {"id": "a" * 16}}}})
    >>> request_fingerprint("POST", "/x", "", "", p)
    'id:aaaaaaaaaaaaaaaa'
    """
    client_id = payment_identifier(payload)
    if client_id is not None:
        return "id:" + client_id
    text = f"{method.upper()}\n{path}\n{query}\n{body_digest}"
    return "req:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class BodyDigest:
    """SHA-256 of the request body chunks the app reads (one per request)."""

    __slots__ = ("_hash", "seen")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.seen = False

    def update(self, chunk: bytes) -> None:
        if chunk:
            self.seen = True
            self._hash.update(chunk)

    def hexdigest(self) -> str:
        """The digest of what was read, ``""`` when nothing was."""
        return self._hash.hexdigest() if self.seen else ""


def digesting_receive(receive: Receive, digest: BodyDigest) -> Receive:
    """An ASGI ``receive`` that feeds each ``http.request`` body chunk to ``digest`` on its way to the app."""

    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            digest.update(message.get("body", b""))
        return message

    return wrapped


class DigestingInput:
    """A WSGI ``wsgi.input`` wrapper that feeds what the app reads to a :class:`BodyDigest`."""

    def __init__(self, stream: IO[bytes], digest: BodyDigest) -> None:
        self._stream, self._digest = stream, digest

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size) if size is not None and size >= 0 else self._stream.read()
        self._digest.update(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size) if size is not None and size >= 0 else self._stream.readline()
        self._digest.update(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = self._stream.readlines(hint)
        for line in lines:
            self._digest.update(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
