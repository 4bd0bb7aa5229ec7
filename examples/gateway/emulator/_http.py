"""Response plumbing shared by the emulated APIs: JSON, SSE with injected faults, request context."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from x402_middleware.wire import loads_untrusted

from ._faults import FAULT_HEADER, EmulatorState, Fault


class EmulatedDrop(Exception):
    """Raised inside a streaming body to cut the connection (the ``drop-mid-stream`` fault)."""


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a handler needs besides the body: the shared state, the endpoint label and the fault, if any."""

    state: EmulatorState
    endpoint: str
    fault: Fault | None


async def read_json(request: Request) -> Any:
    try:
        return loads_untrusted(await request.body())
    except ValueError:
        return None


async def context(request: Request, api: str, model: str) -> Ctx:
    """Record the request and pick its fault; ``timeout`` faults sleep here, before anything is sent."""
    state: EmulatorState = request.app.state.emulator
    endpoint = request.path_params.get("ep", "default")
    state.record(endpoint, api, model)
    fault = state.fault_for(request.headers.get(FAULT_HEADER), endpoint, model)
    if fault is not None and fault.kind == "timeout":
        await asyncio.sleep(fault.delay)
    return Ctx(state, endpoint, fault)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, headers=headers, media_type="application/json"
    )


def send_events(
    events: Sequence[bytes], fault: Fault | None, error_event: bytes, media_type: str = "text/event-stream"
) -> Response:
    """Stream pre-rendered SSE events, applying the slow-first-byte / mid-stream faults."""

    async def body() -> AsyncIterator[bytes]:
        if fault is not None and fault.kind == "slow-first-byte":
            await asyncio.sleep(fault.delay)
        for i, event in enumerate(events):
            if i == 2 and fault is not None and fault.kind == "error-mid-stream":
                yield error_event
                return
            if i == 2 and fault is not None and fault.kind == "drop-mid-stream":
                raise EmulatedDrop("emulated connection drop")
            yield event

    headers = {"cache-control": "no-cache"}
    return StreamingResponse(body(), media_type=media_type, headers=headers)


def send_json_slowly(data: Any, fault: Fault | None, headers: dict[str, str] | None = None) -> Response:
    """A 200 JSON body, delayed after the headers when the fault is ``slow-first-byte``."""
    if fault is None or fault.kind != "slow-first-byte":
        return json_response(data, headers=headers)

    async def body() -> AsyncIterator[bytes]:
        await asyncio.sleep(fault.delay)
        yield json.dumps(data, separators=(",", ":")).encode()

    return StreamingResponse(body(), media_type="application/json", headers=headers)


def status_fault(fault: Fault | None, render: Callable[[int, int | None], Response]) -> Response | None:
    """The provider's error response for an HTTP-status fault, else ``None``."""
    if fault is None or fault.kind != "status" or fault.status is None:
        return None
    return render(fault.status, fault.retry_after)
