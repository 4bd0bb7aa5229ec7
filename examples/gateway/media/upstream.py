"""Media calls to OpenAI-compatible upstreams, with the chat pools' failover (``Pools.failover``).

* ``POST {base}/images/generations`` -> JSON (``b64_json`` or ``url``), passed through;
* ``POST {base}/audio/generations`` -> audio bytes or base64 JSON, passed through with its content type;
* ``POST {base}/videos`` -> a job ``{id, status}``; ``GET {base}/videos/{id}`` its status;
  ``GET {base}/videos/{id}/content`` the file.

An answer counts as accepted only with a 2xx *and* the content type the call expects, so a gateway 2xx (and the
payment settled on it) always means the upstream produced the media or accepted the job.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from x402_middleware.wire import loads_untrusted

from ..pools import Pools
from ..providers import Endpoint, Provider, UpstreamFailure
from ..providers.base import _transport_failure
from ..providers.errors import failure_from_response
from ..providers.failure import PROTOCOL
from ..providers.upstream import STREAM_ERRORS, UpstreamResponse
from .catalog import MediaModel
from .requests import MediaCall

#: An upstream job id is put into URLs: only these characters are accepted from an upstream.
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_PATHS = {"image": "/images/generations", "audio": "/audio/generations", "video": "/videos"}
_TYPES = {"image": ("application/json",), "audio": ("audio/", "application/json"), "video": ("application/json",)}


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """An accepted upstream answer: its body and content type, the endpoint that served it."""

    content: bytes
    content_type: str
    endpoint: str

    def json(self) -> Any:
        return loads_untrusted(self.content)


async def generate(pools: Pools, call: MediaCall, trace: MutableMapping[str, Any]) -> MediaAnswer:
    """Submit ``call`` to the first endpoint of its pool that accepts it (a video: the job, not the file)."""
    kind = call.model.kind

    async def attempt(provider: Provider, endpoint: Endpoint) -> MediaAnswer:
        url = endpoint.base_url.rstrip("/") + _PATHS[kind]
        response = await _send(pools, provider, endpoint, url, call.body)
        answer = _accepted(response, endpoint, _TYPES[kind])
        if kind == "video":
            job = _job(answer)
            if job.get("status") not in ("queued", "in_progress"):
                raise UpstreamFailure(PROTOCOL, "the upstream did not accept the video job", endpoint=endpoint.name)
        return answer

    return await pools.failover(call.model, attempt, trace)


async def job_status(pools: Pools, model: MediaModel, endpoint_name: str, job_id: str) -> dict[str, Any]:
    """The upstream's status object of a video job (``GET {base}/videos/{id}``) from the endpoint that took it."""
    provider, endpoint = _endpoint(pools, model, endpoint_name)
    url = f"{endpoint.base_url.rstrip('/')}/videos/{job_id}"
    try:
        async with asyncio.timeout(pools.timeouts.total):
            response = await pools.upstream.get(
                provider, endpoint, url, pools.timeouts.total, pools.timeouts.connect, stream=False
            )
    except (TimeoutError, *STREAM_ERRORS) as exc:
        raise _transport_failure(exc, endpoint) from exc
    return _job(_accepted(response, endpoint, ("application/json",)))


async def job_content(pools: Pools, model: MediaModel, endpoint_name: str, job_id: str) -> UpstreamResponse:
    """The finished video's file, streamed (``GET {base}/videos/{id}/content``); the caller closes it."""
    provider, endpoint = _endpoint(pools, model, endpoint_name)
    url = f"{endpoint.base_url.rstrip('/')}/videos/{job_id}/content"
    try:
        async with asyncio.timeout(pools.timeouts.first_byte):
            response = await pools.upstream.get(
                provider, endpoint, url, pools.timeouts.read, pools.timeouts.connect, stream=True
            )
    except (TimeoutError, *STREAM_ERRORS) as exc:
        raise _transport_failure(exc, endpoint) from exc
    if response.status_code >= 300:
        await response.aclose()
        raise UpstreamFailure(PROTOCOL, f"the upstream has no file for job {job_id}", status=response.status_code)
    return response


def _endpoint(pools: Pools, model: MediaModel, name: str) -> tuple[Provider, Endpoint]:
    for endpoint in pools.endpoints.get(model.pool, ()):
        if endpoint.name == name:
            return pools.providers[endpoint.kind], endpoint
    raise UpstreamFailure(PROTOCOL, f"endpoint {name!r} of pool {model.pool!r} is no longer configured")


async def _send(pools: Pools, provider: Provider, endpoint: Endpoint, url: str, body: Any) -> UpstreamResponse:
    timeouts = pools.timeouts
    try:
        async with asyncio.timeout(timeouts.total):
            return await pools.upstream.post(
                provider, endpoint, url, body, timeouts.total, timeouts.connect, stream=False
            )
    except (TimeoutError, *STREAM_ERRORS) as exc:
        raise _transport_failure(exc, endpoint) from exc


def _accepted(response: UpstreamResponse, endpoint: Endpoint, types: tuple[str, ...]) -> MediaAnswer:
    if response.status_code >= 300:
        raise failure_from_response(response.status_code, response.headers, response.content, endpoint.name)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith(types) or not response.content:
        raise UpstreamFailure(
            PROTOCOL, f"unexpected upstream answer ({content_type or 'no content type'})", endpoint=endpoint.name
        )
    return MediaAnswer(response.content, content_type, endpoint.name)


def _job(answer: MediaAnswer) -> dict[str, Any]:
    try:
        job = answer.json()
    except ValueError:
        job = None
    if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not JOB_ID.match(job["id"]):
        raise UpstreamFailure(PROTOCOL, "unreadable video job from the upstream", endpoint=answer.endpoint)
    return job
