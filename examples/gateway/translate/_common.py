"""Small helpers shared by the wire-format translators."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from x402_middleware.wire import loads_untrusted

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)\Z", re.DOTALL)


def dumps(value: Any) -> str:
    """Compact JSON, as upstreams expect tool-call arguments."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads_object(text: Any) -> dict[str, Any]:
    """Tool-call ``arguments`` (a JSON string) as an object; anything else is wrapped so nothing is lost."""
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = loads_untrusted(text)
    except ValueError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def text_of(content: Any) -> str:
    """The text of an OpenAI or Anthropic content value (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif isinstance(part, Mapping) and part.get("type") == "tool_result":
                out.append(text_of(part.get("content")))
        return "".join(out)
    return str(content)


def data_uri(url: str) -> tuple[str, str] | None:
    """``(mime_type, base64_data)`` of a ``data:`` URI, else ``None``."""
    m = _DATA_URI.match(url)
    if m is None:
        return None
    return m.group("mime") or "application/octet-stream", m.group("data")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def stop_list(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


def chunk(
    chunk_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One OpenAI ``chat.completion.chunk`` (a usage-only chunk when ``delta`` is None)."""
    out: dict[str, Any] = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if delta is None:
        out["choices"] = []
    else:
        out["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    if usage is not None:
        out["usage"] = usage
    return out


def usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **extra}


class StreamError(Exception):
    """The upstream reported an error inside an already started stream (e.g. Anthropic ``event: error``)."""

    def __init__(self, message: str, kind: str = "server") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
