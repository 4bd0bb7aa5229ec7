"""Validate and price a media request: the upstream body, what it costs and how the 402 describes it.

Pure: the same function prices the unpaid challenge, the paid retry and the call the handler makes::

    call = prepare_media(catalog, "image", {"model": "openai/gpt-image-1", "prompt": "a cat", "n": 2})
    call.quote.amount, call.quote.description   # 85000, 'GPT Image 1: 2 images 1024x1024 medium'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from x402_middleware.money import to_atomic

from ..catalog import Catalog
from ..errors import InvalidRequest, UnknownModel
from .catalog import MediaModel

MAX_PROMPT_CHARS = 32_000
IMAGE_FORMATS = ("b64_json", "url")
AUDIO_FORMATS = ("wav", "b64_json")


@dataclass(frozen=True, slots=True)
class MediaQuote:
    """``amount`` in atomic USDC (``None``: free) and the ASCII ``resource.description`` of the 402."""

    amount: int | None
    description: str


@dataclass(frozen=True, slots=True)
class MediaCall:
    """A validated, priced media request: the OpenAI-compatible upstream body and its quote."""

    model: MediaModel
    body: Mapping[str, Any]
    quote: MediaQuote
    #: No ``response_format`` asked for: answer BlockRun's shape, each item's ``url`` (a data URI for inline bytes).
    data_urls: bool = False

    @property
    def model_id(self) -> str:
        return self.model.id


def prepare_media(catalog: Catalog, kind: str, body: Any) -> MediaCall:
    """Validate a request body of ``kind`` (``image``, ``audio``, ``video``); raises ``InvalidRequest`` (400)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    model = _model(catalog, kind, body.get("model"))
    prompt = body.get("prompt", body.get("input"))
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"prompt must be a non-empty string of at most {MAX_PROMPT_CHARS} characters", param="prompt"
        )
    if kind == "image":
        return _image(model, body, prompt)
    seconds = _seconds(model, body)
    upstream: dict[str, Any] = {"model": model.upstream_model, "prompt": prompt}
    if kind == "audio":
        fmt = body.get("response_format", "b64_json")
        if fmt not in AUDIO_FORMATS:
            raise InvalidRequest(f"response_format must be one of {', '.join(AUDIO_FORMATS)}", param="response_format")
        upstream.update(duration=seconds, response_format=fmt)
        voice = body.get("voice")
        if voice is not None:
            known = [v.id for v in catalog.voices]
            if not isinstance(voice, str) or (known and voice not in known):
                raise InvalidRequest(
                    f"voice must be one of GET /v1/audio/voices: {', '.join(known[:8])}", param="voice"
                )
            upstream["voice"] = voice
        for key, kind_of in (("instrumental", bool), ("lyrics", str)):
            if key in body:
                if not isinstance(body[key], kind_of):
                    raise InvalidRequest(f"{key} must be a {kind_of.__name__}", param=key)
                upstream[key] = body[key]
        what = f"{seconds} s of audio"
    else:
        upstream["seconds"] = str(seconds)  # the Videos API takes seconds as a string
        if "size" in body:
            if not isinstance(body["size"], str):
                raise InvalidRequest("size must be a string such as '1280x720'", param="size")
            upstream["size"] = body["size"]
        what = f"{seconds} s video"
    usd = model.flat if model.flat is not None else (model.per_second or Decimal(0)) * seconds
    return MediaCall(model, upstream, _quote(model, usd, what), "response_format" not in body)


def _image(model: MediaModel, body: Mapping[str, Any], prompt: str) -> MediaCall:
    size = body.get("size", model.default_size)
    n = body.get("n", 1)
    if type(n) is not int or not 1 <= n <= model.max_n:
        raise InvalidRequest(f"n must be an integer between 1 and {model.max_n}", param="n")
    fmt = body.get("response_format", "b64_json")
    if fmt not in IMAGE_FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(IMAGE_FORMATS)}", param="response_format")
    upstream: dict[str, Any] = {"model": model.upstream_model, "prompt": prompt, "n": n, "response_format": fmt}
    if model.per_image is None:  # a flat price per image
        assert model.flat is not None
        return MediaCall(model, upstream, _quote(model, model.flat * n, f"{n} image(s)"), "response_format" not in body)
    if not isinstance(size, str) or size not in model.per_image:
        raise InvalidRequest(f"size must be one of {', '.join(model.per_image)}", param="size")
    prices = model.per_image[size]
    quality = body.get("quality", model.default_quality if model.default_quality in prices else next(iter(prices)))
    if not isinstance(quality, str) or quality not in prices:
        raise InvalidRequest(f"quality for {size} must be one of {', '.join(prices)}", param="quality")
    upstream["size"] = size
    if quality:
        upstream["quality"] = quality
    what = f"{n} image(s) {size}" + (f" {quality}" if quality else "")
    return MediaCall(model, upstream, _quote(model, prices[quality] * n, what), "response_format" not in body)


def _model(catalog: Catalog, kind: str, model_id: Any) -> MediaModel:
    known = [m.id for m in catalog.media.values() if m.kind == kind]
    if not isinstance(model_id, str) or not model_id:
        raise InvalidRequest(f"model is required: name one of GET /v1/{_listing(kind)}/models", param="model")
    model = catalog.media.get(model_id)
    if model is None or model.kind != kind:
        raise UnknownModel(model_id, known)
    return model


def _seconds(model: MediaModel, body: Mapping[str, Any]) -> int:
    value = body.get("seconds", body.get("duration", body.get("duration_seconds", model.default_seconds)))
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or not 1 <= value <= model.max_seconds:
        raise InvalidRequest(f"seconds must be an integer between 1 and {model.max_seconds}", param="seconds")
    if model.seconds and value not in model.seconds:
        raise InvalidRequest(f"seconds must be one of {', '.join(map(str, model.seconds))}", param="seconds")
    return value


def _quote(model: MediaModel, usd: Decimal, what: str) -> MediaQuote:
    # Catalog prices have at most 6 decimals, so the sum is exact in atomic USDC units.
    amount = to_atomic(usd + model.fee, 6) if usd > 0 else None
    return MediaQuote(amount, f"{model.name}: {what}")


def _listing(kind: str) -> str:
    return {"image": "images", "audio": "audio", "video": "video"}[kind]
