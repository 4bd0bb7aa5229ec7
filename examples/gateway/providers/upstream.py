"""How the providers send a request upstream: httpx's client, with what never changes per endpoint built once.

Each upstream call used to parse its URL string, build and encode its header dict and a new ``httpx.Timeout``;
those depend only on the endpoint, the URL and the pool's timeouts, so :class:`Upstream` keeps them (the catalog
bounds how many). The JSON body is encoded exactly as httpx's ``json=`` would (compact, ``ensure_ascii=False``,
``allow_nan=False``), so the bytes on the wire do not change::

    upstream = Upstream(httpx.AsyncClient())
    request = upstream.request(provider, endpoint, url, payload, timeouts.total, timeouts.connect)
    response = await upstream.send(request, stream=False)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .base import Endpoint, Provider

#: Bounds the per-(endpoint, URL) cache; the catalog keeps it far smaller (endpoints x Gemini model URLs).
_MAX_CACHED = 4096


def encode_json(payload: Any) -> bytes:
    """The body httpx's ``json=`` sends (httpx 0.28 ``encode_json``): a non-finite float raises ``ValueError``."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Upstream:
    """The shared ``httpx.AsyncClient`` plus what each upstream request reuses (parsed URL, headers, timeouts)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        # (id(provider), id(endpoint), url) -> (provider, endpoint, URL, Headers); the value keeps both alive,
        # so their ids cannot be reused while the entry exists.
        self._targets: dict[tuple[int, int, str], tuple[Provider, Endpoint, httpx.URL, httpx.Headers]] = {}
        self._timeouts: dict[tuple[float, float], httpx.Timeout] = {}

    def _target(self, provider: Provider, endpoint: Endpoint, url: str) -> tuple[httpx.URL, httpx.Headers]:
        key = (id(provider), id(endpoint), url)
        entry = self._targets.get(key)
        if entry is None:
            if len(self._targets) >= _MAX_CACHED:
                self._targets.clear()
            entry = (provider, endpoint, httpx.URL(url), httpx.Headers(provider.headers(endpoint)))
            self._targets[key] = entry
        return entry[2], entry[3]

    def _timeout(self, seconds: float, connect: float) -> httpx.Timeout:
        timeout = self._timeouts.get((seconds, connect))
        if timeout is None:
            timeout = self._timeouts[(seconds, connect)] = httpx.Timeout(seconds, connect=connect)
        return timeout

    def request(self, provider: Provider, endpoint: Endpoint, url: str, payload: Any, seconds: float,
                connect: float) -> httpx.Request:
        """``POST url`` with ``payload`` as JSON and the provider's headers; ``httpx.Timeout(seconds, connect=...)``."""
        target, headers = self._target(provider, endpoint, url)
        return self.client.build_request("POST", target, content=encode_json(payload), headers=headers,
                                         timeout=self._timeout(seconds, connect))

    async def send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """``client.send``: with ``stream=False`` the body has been read."""
        return await self.client.send(request, stream=stream)
