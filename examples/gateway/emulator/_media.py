"""Emulated OpenAI-compatible media APIs, with the same fault injection as chat (``_faults.py``).

* ``POST /v1/images/generations`` -> ``{created, data: [{b64_json} | {url}]}`` with real PNGs (``url``: served at
  ``/_files/{name}``);
* ``POST /v1/audio/generations`` -> a real WAV (``audio/wav``), or ``{data: [{b64_json, duration_seconds}]}``;
* ``POST /v1/videos`` -> a job ``{id, object: "video", status: "queued"}``; ``GET /v1/videos/{id}`` is
  ``in_progress`` until ``video_delay`` seconds passed (``POST /_control {"video_delay": 0.2}``), then
  ``completed`` -- or ``failed`` with the ``job-fails`` fault on the submit; ``GET /v1/videos/{id}/content`` is the
  file (an animated PNG: no video encoder is installed).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._faults import EmulatorState, Job
from ._files import apng, color_of, png, wav
from ._http import context, json_response, read_json, status_fault
from ._openai import error

AUDIO_SECONDS = 0.5  # the clip is short whatever length was asked for; duration_seconds reports the request


def _authorized(request: Request) -> bool:
    key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(key) and key != "invalid"


def _prompt(body: Any) -> str | None:
    if not isinstance(body, Mapping) or not isinstance(body.get("model"), str):
        return None
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) and prompt.strip() else None


async def images(request: Request) -> Response:
    if not _authorized(request):
        return error(401)
    body = await read_json(request)
    prompt = _prompt(body)
    n = body.get("n", 1) if isinstance(body, Mapping) else None
    if prompt is None or type(n) is not int or not 1 <= n <= 10:
        return error(400, message="model, prompt and n (1-10) are required", param="prompt")
    ctx = await context(request, "images", body["model"])
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    data = []
    for i in range(n):
        image = png(16, 16, color_of(f"{prompt}#{i}"))
        if body.get("response_format") == "url":
            name = ctx.state.keep_file(image, ".png")
            data.append({"url": f"{request.url.scheme}://{request.url.netloc}/_files/{name}", "revised_prompt": prompt})
        else:
            data.append({"b64_json": base64.b64encode(image).decode(), "revised_prompt": prompt})
    usage = {"input_tokens": max(1, len(prompt) // 4), "output_tokens": 272 * n, "total_tokens": 0}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    return json_response({"created": int(time.time()), "data": data, "usage": usage})


async def audio(request: Request) -> Response:
    if not _authorized(request):
        return error(401)
    body = await read_json(request)
    prompt = _prompt(body)
    duration = body.get("duration", 30) if isinstance(body, Mapping) else None
    if prompt is None or type(duration) is not int or duration < 1:
        return error(400, message="model, prompt and a positive integer duration are required", param="prompt")
    ctx = await context(request, "audio", body["model"])
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    clip = wav(AUDIO_SECONDS, 220 + color_of(prompt)[0] * 2)
    if body.get("response_format") == "b64_json":
        item = {"b64_json": base64.b64encode(clip).decode(), "duration_seconds": duration, "mime_type": "audio/wav"}
        return json_response({"created": int(time.time()), "model": body["model"], "data": [item]})
    return Response(clip, media_type="audio/wav")


async def submit_video(request: Request) -> Response:
    if not _authorized(request):
        return error(401)
    body = await read_json(request)
    prompt = _prompt(body)
    seconds = body.get("seconds", "4") if isinstance(body, Mapping) else None
    if prompt is None or not isinstance(seconds, str) or not seconds.isdigit():
        return error(400, message="model, prompt and seconds (a string such as '4') are required", param="seconds")
    ctx = await context(request, "videos", body["model"])
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    job = Job(
        id="video_" + uuid.uuid4().hex,
        model=body["model"],
        prompt=prompt,
        seconds=seconds,
        created_at=int(time.time()),
        started=time.monotonic(),
        fails=ctx.fault is not None and ctx.fault.kind == "job-fails",
    )
    ctx.state.keep_job(job)
    return json_response(_job_body(job, ctx.state, "queued"))


async def video_status(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    job = state.jobs.get(request.path_params["job"])
    if not _authorized(request):
        return error(401)
    if job is None:
        return error(404, message="No video found with that id")
    ctx = await context(request, "videos", job.model)
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    return json_response(_job_body(job, state, _status(job, state)))


async def video_content(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    job = state.jobs.get(request.path_params["job"])
    if not _authorized(request):
        return error(401)
    if job is None or _status(job, state) != "completed":
        return error(404, message="The video is not ready")
    colors = [color_of(f"{job.prompt}#{i}") for i in range(4)]
    return Response(apng(16, 16, colors), media_type="image/apng")


async def files(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    found = state.files.get(request.path_params["name"])
    if found is None:
        return Response(status_code=404)
    return Response(found, media_type="image/png")


def _status(job: Job, state: EmulatorState) -> str:
    if time.monotonic() - job.started < state.video_delay:
        return "in_progress"
    return "failed" if job.fails else "completed"


def _job_body(job: Job, state: EmulatorState, status: str) -> dict[str, Any]:
    elapsed = time.monotonic() - job.started
    progress = 100 if status in ("completed", "failed") else min(99, int(100 * elapsed / max(state.video_delay, 1e-3)))
    body: dict[str, Any] = {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": status,
        "progress": 0 if status == "queued" else progress,
        "created_at": job.created_at,
        "seconds": job.seconds,
        "size": "16x16",
    }
    if status == "failed":
        body["error"] = {"code": "generation_failed", "message": "The video could not be generated (emulated)"}
    return body
