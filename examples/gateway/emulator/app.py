"""The emulator ASGI app: the chat APIs (OpenAI, Anthropic, Bedrock, Gemini) and OpenAI-style media (images, audio, video jobs), optionally under ``/_ep/{name}`` so one server can
play several pool endpoints, plus ``/_control`` to set standing faults and read request counts."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from . import _anthropic, _bedrock, _gemini, _media, _openai
from ._faults import EmulatorState
from ._http import json_response, read_json


async def control(request: Request) -> Response:
    """``GET`` state, ``POST`` a rule ``{"fault", "endpoint"?, "model"?, "retry_after"?, "delay"?, "times"?}``,
    ``DELETE`` rules and counters."""
    state: EmulatorState = request.app.state.emulator
    if request.method == "POST":
        raw = await read_json(request)
        if not isinstance(raw, dict):
            return json_response({"error": 'send a JSON object such as {"fault": "429", "model": "gpt-5.2"}'}, 400)
        if "video_delay" in raw and "fault" not in raw:
            delay = raw["video_delay"]
            if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 600:
                return json_response({"error": "video_delay is a number of seconds between 0 and 600"}, 400)
            state.video_delay = float(delay)
            return json_response(state.snapshot())
        try:
            rule = state.add_rule(raw)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"added": rule.fault, **state.snapshot()})
    if request.method == "DELETE":
        state.reset()
    return json_response(state.snapshot())


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def _api_routes() -> list[BaseRoute]:
    return [
        Route("/v1/chat/completions", _openai.chat_completions, methods=["POST"]),
        Route("/v1/messages", _anthropic.messages, methods=["POST"]),
        Route("/model/{rest:path}", _bedrock.dispatch, methods=["POST"]),
        Route("/v1beta/models/{rest:path}", _gemini.dispatch, methods=["POST"]),
        Route("/v1/images/generations", _media.images, methods=["POST"]),
        Route("/v1/audio/generations", _media.audio, methods=["POST"]),
        Route("/v1/videos", _media.submit_video, methods=["POST"]),
        Route("/v1/videos/{job}", _media.video_status, methods=["GET"]),
        Route("/v1/videos/{job}/content", _media.video_content, methods=["GET"]),
    ]


def create_emulator_app(state: EmulatorState | None = None) -> Starlette:
    """A fresh emulator app; pass ``state`` to share fault rules between apps (rarely needed)."""
    app = Starlette(
        routes=[
            *_api_routes(),
            Mount("/_ep/{ep}", routes=_api_routes()),
            Route("/_control", control, methods=["GET", "POST", "DELETE"]),
            Route("/_files/{name}", _media.files, methods=["GET"]),
            Route("/health", health),
        ]
    )
    app.state.emulator = state if state is not None else EmulatorState()
    return app
