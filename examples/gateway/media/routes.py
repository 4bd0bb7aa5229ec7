"""The media endpoints (each under ``/v1`` and ``/api/v1``).

* ``POST /images/generations``, ``POST /audio/generations``: paid per call; the upstream's answer is passed
  through (OpenAI Images JSON with ``b64_json`` or ``url``; audio bytes or base64 JSON);
* ``POST /videos/generations``: paid per call; answers ``202 {id, poll_url, status}`` once the upstream accepted
  the job, and ``GET /videos/generations/{id}`` reports it: 202 while it runs, 200 with ``status: completed`` and
  ``data[0].url`` (``.../content``, the file) or ``status: failed`` (blockrun-clients.md §3.7);
* ``GET /images/models``, ``/video/models``, ``/audio/models``, ``/audio/voices``: free, 100/hour per IP.

Like the chat handlers, none of them starts a 2xx before the upstream accepted the call, so a failed call is never
settled.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import GatewayError, UpstreamError
from ..listing import dumps_exact
from ..prepare import prepared_of
from ..providers import UpstreamFailure
from ..providers.upstream import UpstreamResponse
from ..service import Gateway
from .catalog import MediaModel
from .requests import MediaCall
from .upstream import JOB_ID, generate, job_content, job_status

Limited = Callable[[Request], "Response | None"]
_LISTINGS = {"images": "image", "video": "video", "audio": "audio"}


class MediaHandlers:
    """The media routes of one gateway app; listings are rendered once."""

    def __init__(self, gateway: Gateway, limited: Limited) -> None:
        self.gw = gateway
        self.limited = limited
        available = gateway.available_media()
        self._listings = {
            name: dumps_exact({"object": "list", "data": [media_row(m) for m in available if m.kind == kind]})
            for name, kind in _LISTINGS.items()
        }
        voices = [
            {"id": v.id, "name": v.name, "provider": v.provider, "language": v.language} for v in gateway.catalog.voices
        ]
        self._voices = dumps_exact({"object": "list", "voices": voices, "data": voices})

    def routes(self) -> list[Route]:
        out = []
        for prefix in ("/v1", "/api/v1"):
            out += [
                Route(f"{prefix}/images/generations", self.generate, methods=["POST"]),
                Route(f"{prefix}/audio/generations", self.generate, methods=["POST"]),
                Route(f"{prefix}/videos/generations", self.generate, methods=["POST"]),
                Route(f"{prefix}/videos/generations/{{job}}", self.poll, methods=["GET"]),
                Route(f"{prefix}/videos/generations/{{job}}/content", self.content, methods=["GET"]),
                Route(f"{prefix}/audio/voices", self.voices, methods=["GET"]),
            ]
            out += [Route(f"{prefix}/{name}/models", self._listing(name), methods=["GET"]) for name in _LISTINGS]
        return out

    async def generate(self, request: Request) -> Response:
        call = await prepared_of(request)
        assert isinstance(call, MediaCall)
        model = call.model
        trace = request.scope.setdefault("gateway.trace", {})
        trace.update(api=model.kind, model=model.id, stream=False, price=call.quote.amount)
        answer = await generate(self.gw.pools, call, trace)
        headers = {"x-gateway-upstream": answer.endpoint} if self.gw.config.expose_upstream else {}
        if model.kind != "video":
            if call.data_urls and answer.content_type == "application/json":
                return JSONResponse(with_data_urls(answer.json(), model.id), headers=headers)
            return Response(answer.content, headers=headers, media_type=answer.content_type)  # the upstream's own
        job = answer.json()
        job_id = encode_job(model.id, answer.endpoint, job["id"])
        body = {
            "id": job_id,
            "object": "video.generation",
            "model": model.id,
            "status": job["status"],
            "created": job.get("created_at") if isinstance(job.get("created_at"), int) else int(time.time()),
            "poll_url": f"/api/v1/videos/generations/{job_id}",  # relative to the SDK's api_url minus /api (§3.7)
        }
        return JSONResponse(body, 202, headers=headers)

    async def poll(self, request: Request) -> Response:
        model, endpoint, upstream_id = self._job(request)
        job_id = request.path_params["job"]
        try:
            job = await job_status(self.gw.pools, model, endpoint, upstream_id)
        except UpstreamFailure as failure:
            raise _poll_error(failure, model) from None
        status = job.get("status")
        body: dict[str, Any] = {"id": job_id, "object": "video.generation", "model": model.id, "status": status}
        if isinstance(job.get("progress"), int):
            body["progress"] = job["progress"]
        if status == "completed":
            body["created"] = job.get("created_at") if isinstance(job.get("created_at"), int) else int(time.time())
            body["data"] = [{"url": f"{request.url.replace(query='')}/content"}]  # served by the gateway: see content()
            return JSONResponse(body)
        if status == "failed":
            error = job["error"] if isinstance(job.get("error"), dict) else {}
            body["error"] = {"message": str(error.get("message") or "the video job failed"), "code": "JOB_FAILED"}
            return JSONResponse(body)
        body["poll_url"] = f"/api/v1/videos/generations/{job_id}"
        return JSONResponse(body, 202)

    async def content(self, request: Request) -> Response:
        model, endpoint, upstream_id = self._job(request)
        try:
            upstream = await job_content(self.gw.pools, model, endpoint, upstream_id)
        except UpstreamFailure as failure:
            raise _poll_error(failure, model) from None
        # The upstream's file URL needs the operator's API key: the gateway streams the file instead.
        return _UpstreamFile(upstream, upstream.headers.get("content-type", "application/octet-stream"))

    async def voices(self, request: Request) -> Response:
        return self.limited(request) or Response(self._voices, media_type="application/json")

    def _listing(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        body = self._listings[name]

        async def endpoint(request: Request) -> Response:
            return self.limited(request) or Response(body, media_type="application/json")

        return endpoint

    def _job(self, request: Request) -> tuple[MediaModel, str, str]:
        decoded = decode_job(request.path_params["job"])
        model = self.gw.catalog.media.get(decoded[0]) if decoded else None
        if decoded is None or model is None or model.kind != "video":
            raise GatewayError("no such video job", status=404, code="NOT_FOUND", type="invalid_request_error")
        return model, decoded[1], decoded[2]


class _UpstreamFile(StreamingResponse):
    """An upstream file streamed to the caller; the upstream response is always closed (also on disconnect)."""

    def __init__(self, upstream: UpstreamResponse, media_type: str) -> None:
        super().__init__(upstream.aiter_bytes(), media_type=media_type)
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.upstream.aclose()


def with_data_urls(body: Any, model_id: str) -> Any:
    """BlockRun's media answer: every item has a ``url`` (inline bytes as a ``data:`` URI), ``model`` is ours.

    Its SDKs read ``data[i].url`` only (``ImageData``/``AudioTrack``), so ``b64_json`` alone would not parse;
    a caller that names ``response_format`` gets the upstream's answer as it is instead.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return body
    for item in body["data"]:
        if isinstance(item, dict) and isinstance(item.get("b64_json"), str) and "url" not in item:
            item["url"] = f"data:{_mime(item)};base64,{item['b64_json']}"
    body["model"] = model_id
    return body


def _mime(item: dict[str, Any]) -> str:
    if isinstance(item.get("mime_type"), str):
        return str(item["mime_type"])
    head = base64.b64decode(item["b64_json"][:16] + "=" * (-len(item["b64_json"][:16]) % 4), validate=False)
    for magic, mime in (
        (b"\x89PNG", "image/png"),
        (b"\xff\xd8", "image/jpeg"),
        (b"RIFF", "audio/wav"),
        (b"GIF8", "image/gif"),
    ):
        if head.startswith(magic):
            return mime
    return "application/octet-stream"


def encode_job(model_id: str, endpoint: str, upstream_id: str) -> str:
    """The gateway's job id: which model and endpoint took the job and the upstream's id (polls go back there)."""
    raw = f"{model_id}\n{endpoint}\n{upstream_id}".encode()
    return "vgen_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_job(job_id: str) -> tuple[str, str, str] | None:
    if not job_id.startswith("vgen_") or len(job_id) > 400:
        return None
    text = job_id[5:]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split("\n")
    if len(parts) != 3 or not JOB_ID.match(parts[2]):
        return None
    return parts[0], parts[1], parts[2]


def media_row(model: MediaModel) -> dict[str, Any]:
    """One row of ``/v1/{images,video,audio}/models``: id, name, kind and the catalog's prices (exact numbers)."""
    row: dict[str, Any] = {
        "id": model.id,
        "object": "model",
        "name": model.name,
        "owned_by": model.owned_by,
        "type": model.kind,
        "categories": [model.kind],
        "description": model.description or f"{model.name} via x402 pay-per-call",
        "provider": model.owned_by,  # BlockRun's ImageModel/VideoModel/AudioModel name it so
        "available": True,
    }
    pricing: dict[str, Any]
    if model.per_image is not None:
        pricing = {
            "per_image": {
                size: prices[""] if list(prices) == [""] else dict(prices) for size, prices in model.per_image.items()
            }
        }
        row.update(billing_mode="per_image", default_size=model.default_size, sizes=list(model.per_image))
        if model.default_quality:
            row["default_quality"] = model.default_quality
        row["max_n"] = model.max_n
    elif model.per_second is not None:
        pricing = {"per_second": model.per_second}
        row["billing_mode"] = "per_second"
    else:
        pricing = {"flat": model.flat}
        row["billing_mode"] = "flat"
    if model.kind != "image":
        row.update(default_seconds=model.default_seconds, max_seconds=model.max_seconds)
        if model.seconds:
            row["seconds"] = list(model.seconds)
    pricing["request_fee"] = model.fee if model.fee else Decimal(0)
    row["pricing"] = pricing
    return row


def _poll_error(failure: UpstreamFailure, model: MediaModel) -> GatewayError:
    if failure.status == 404:
        return GatewayError("no such video job", status=404, code="NOT_FOUND", type="invalid_request_error")
    return UpstreamError(
        f"the upstream for {model.id} did not report the job: {failure.message}"[:300],
        source=model.pool,
        status=502,
        code="UPSTREAM_ERROR",
    )
