"""A local upstream emulator speaking the real OpenAI, Anthropic, Amazon Bedrock and Gemini wire formats.

Deterministic echo replies, usage computed from the inputs, streaming in each
provider's own shape (SSE; Bedrock's SigV4-checked event stream), and fault injection
(HTTP errors in each provider's envelope, 429 with ``Retry-After``, timeouts, slow first byte, mid-stream
errors and drops) by request header ``x-emulator-fault`` or ``POST /_control``.
Routes are also served under ``/_ep/{name}/...`` so one server can stand in for
several endpoints of a pool (faults can target one ``endpoint``).

    python -m examples.gateway.emulator --port 0      # prints its URL
"""

from __future__ import annotations

from ._faults import FAULT_HEADER, EmulatorState, Fault, parse_fault
from .app import create_emulator_app
from .server import EmulatorServer, bind_loopback, spawn_emulator

__all__ = [
    "FAULT_HEADER",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "bind_loopback",
    "create_emulator_app",
    "parse_fault",
    "spawn_emulator",
]
