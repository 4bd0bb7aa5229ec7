"""Notice an ASGI client that left before its paid response started, so that it is not charged.

LLM calls are slow and clients time out: a client that disconnected while the app was working would be
charged for a response nobody receives. ASGI servers say so with an ``http.disconnect`` message from
``receive()`` (ASGI HTTP spec, "Disconnected Client"), but only to whoever is waiting on ``receive()``,
and an app that has read its body usually isn't. :class:`ClientWatch` wraps ``receive`` for one request:

* it passes the request body to the app untouched (nothing is buffered);
* once the app has read the whole body (or at once, for a request without one) a task waits on the real
  ``receive()``; an ``http.disconnect`` sets :attr:`gone`, and an app that calls ``receive()`` again is
  handed that same message, so only one ``receive()`` is ever pending.

::

    watch = ClientWatch(receive)
    await watch.start(has_body(scope))
    await app(scope, watch.receive, send)   # the middleware checks watch.gone before settling
    watch.close()
"""

from __future__ import annotations

import asyncio
from collections import deque

from ._types import Message, Receive, Scope


class ClientWatch:
    """Per-request ``receive`` wrapper that knows whether the client disconnected (never shared)."""

    __slots__ = ("_early", "_receive", "_task", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Message] | None = None
        self._early: deque[Message] = deque()  # the empty body message of a bodiless request, read by start()
        self.gone = False

    async def start(self, body: bool) -> None:
        """Begin watching at once when the request has no ``body`` (its one empty message is kept for the app)."""
        if not body:
            message = await self._receive()  # immediate: the request is complete with its headers
            self._early.append(message)
            if message["type"] == "http.disconnect":
                self.gone = True
            else:
                self._watch()

    async def receive(self) -> Message:
        """The app's ``receive``."""
        if self._early:
            return self._early.popleft()
        if self._task is not None:
            # Shielded: an app cancelling its own receive() must not cancel the watch.
            message = await asyncio.shield(self._task)
            if message["type"] != "http.disconnect":
                self._task = None  # not ours to keep: handed on once, then the app reads on by itself
            return message
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.gone = True
        elif message["type"] == "http.request" and not message.get("more_body", False):
            self._watch()
        return message

    def _watch(self) -> None:
        waiting = self._wait()
        try:
            self._task = asyncio.ensure_future(waiting)
        except RuntimeError:  # not on an asyncio loop (trio): no watch, the request is served as it would be
            waiting.close()
            self._task = None

    async def _wait(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.gone = True
        return message

    def close(self) -> None:
        """The request is over: stop waiting on ``receive()``."""
        if self._task is not None and not self._task.done():
            self._task.cancel()


def has_body(scope: Scope) -> bool:
    """Whether an HTTP request announces a body (``Content-Length`` > 0 or ``Transfer-Encoding``)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
    return False
