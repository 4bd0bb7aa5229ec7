"""The per-call price of a chat request: pure, deterministic, in atomic USDC units (6 decimals).

The formula is the library's :class:`x402_middleware.pricing.TokenQuote` (BlockRun's, blockrun-clients.md
§6); this module only reads a request body into its inputs (input estimate, effective ``max_tokens``)::

    output_tokens = ceil(output_share x max_tokens)                 # 10% of max_tokens
    cost  = (input_tokens x input_rate + output_tokens x output_rate) / 1M
    usd   = max(cost, min_charge) + gateway_fee                       # floor $0.001, fee $0.001
    atomic = ceil(usd x 10^6)

Rounding the output share *up* reproduces BlockRun's published example exactly
(GPT-5.5, 17 input and 8192 max tokens: 85 + 820 x 30 = 24685, + 1000 fee =
``"25685"``). ``max_tokens`` is clamped to the model's ``max_output`` (the same
clamp is sent upstream) and defaults to ``fees.default_max_tokens``. Above a
model's long-context threshold the rates get its multipliers. Flat models cost
their flat price (fee included); free models return ``None`` (no 402).

The input estimate is 1 token per 4 UTF-8 bytes of prompt text (messages,
system, tool definitions and tool calls), 4 tokens per message and a fixed
1,000 per image/audio/file part; it reads only the body, so the paid retry is
quoted exactly like the challenge.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from x402_middleware.money import to_atomic
from x402_middleware.pricing import TokenQuote

from .catalog import Fees, ModelInfo
from .errors import InvalidRequest

MAX_TOKENS_LIMIT = 1_000_000
PER_MESSAGE_TOKENS = 4
MEDIA_PART_TOKENS = 1_000
USDC_DECIMALS = 6
_TEXT_PARTS = ("text", "input_text", "output_text")


@dataclass(frozen=True, slots=True)
class Quote:
    """A priced call: ``amount`` in atomic USDC units (``None`` = free), with what it was computed from."""

    amount: int | None
    input_tokens: int
    max_tokens: int
    description: str


def quote_chat(model: ModelInfo, body: Mapping[str, Any]) -> int | None:
    """Atomic USDC units for an OpenAI Chat Completions body, or ``None`` for a free model.

    >>> quote_chat(catalog.get("openai/gpt-5.5"), {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8192})
    25625
    """
    return chat_quote(model, body).amount


def quote_messages(model: ModelInfo, body: Mapping[str, Any]) -> int | None:
    """Atomic USDC units for an Anthropic Messages body (``max_tokens`` required), or ``None`` for a free model."""
    return messages_quote(model, body).amount


def chat_quote(model: ModelInfo, body: Mapping[str, Any]) -> Quote:
    """:func:`quote_chat` with its inputs and an ASCII description for the 402 ``resource.description``."""
    messages = _messages(body)
    chars, parts = _tools_size(body)
    if "response_format" in body:
        chars += _json_len(body["response_format"])
    for message in messages:
        c, p = _content_size(message.get("content"))
        chars, parts = chars + c, parts + p
        for call in message.get("tool_calls") or ():
            chars += _json_len(call)
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return _quote(model, _tokens(chars, parts, len(messages)), _max_tokens(model, value, required=False))


def messages_quote(model: ModelInfo, body: Mapping[str, Any]) -> Quote:
    """:func:`quote_messages` with its inputs and an ASCII description."""
    messages = _messages(body)
    chars, parts = _tools_size(body)
    c, p = _content_size(body.get("system"))
    chars, parts = chars + c, parts + p
    for message in messages:
        c, p = _content_size(message.get("content"))
        chars, parts = chars + c, parts + p
    return _quote(
        model, _tokens(chars, parts, len(messages)), _max_tokens(model, body.get("max_tokens"), required=True)
    )


def atomic_price(model: ModelInfo, input_tokens: int, max_tokens: int) -> int | None:
    """The price for an already estimated input and an effective ``max_tokens``: the library's formula.

    Per-token models are priced by :class:`x402_middleware.pricing.TokenQuote` (the one BlockRun
    formula, shared with any other x402_middleware user) built from the catalog's rates and fees.
    """
    if model.billing_mode == "free":
        return None
    if model.billing_mode == "flat":
        assert model.flat_usd is not None  # guaranteed by the catalog loader
        return to_atomic(model.flat_usd, USDC_DECIMALS)  # the loader refuses sub-micro flat prices
    return _model_formula(model, input_tokens).atomic(input_tokens, max_tokens)


def _model_formula(model: ModelInfo, input_tokens: int) -> TokenQuote:
    """A per-token model's formula for a call of ``input_tokens``: the long-context rates above its threshold."""
    in_rate, out_rate = model.input_per_m, model.output_per_m
    lc = model.long_context
    if lc is not None and input_tokens > lc.threshold:
        in_rate, out_rate = in_rate * lc.input_multiplier, out_rate * lc.output_multiplier
    return _formula(in_rate, out_rate, model.fees)


@lru_cache(maxsize=1024)
def _formula(input_per_m: Decimal, output_per_m: Decimal, fees: Fees) -> TokenQuote:
    # One TokenQuote per (rates, fees): built once, reused by every call to the model.
    return TokenQuote(
        input_per_m,
        output_per_m,
        output_share=fees.output_share,
        floor=fees.min_charge_usd,
        flat_fee=fees.gateway_fee_usd,
        default_max_tokens=fees.default_max_tokens,
        max_tokens_limit=MAX_TOKENS_LIMIT,
        decimals=USDC_DECIMALS,
    )


def usage_price(model: ModelInfo, input_tokens: int, output_tokens: int) -> int | None:
    """What a call that used these tokens costs (usage billing): the quote's formula with the actual output.

    ``ceil((input_tokens x in_rate + output_tokens x out_rate) / 1M, floor $0.001) + fee`` in atomic USDC, the
    long-context rates above the model's threshold; a flat model costs its flat price, a free one ``None``.

    >>> usage_price(catalog.get("openai/gpt-5.5"), 17, 40)   # 17 x $5 + 40 x $30 per 1M: $0.001285 + $0.001 fee
    2285
    """
    if model.billing_mode != "paid":
        return atomic_price(model, input_tokens, 1)
    return _model_formula(model, input_tokens).usage_atomic(input_tokens, output_tokens)


def effective_max_tokens(model: ModelInfo, value: Any, *, required: bool = False) -> int:
    """Validate a requested ``max_tokens`` and clamp it to the model's ``max_output`` (default when absent)."""
    return _max_tokens(model, value, required=required)


def _quote(model: ModelInfo, input_tokens: int, max_tokens: int) -> Quote:
    if input_tokens > model.context_window:
        raise InvalidRequest(
            f"The prompt (~{input_tokens} tokens) exceeds the {model.context_window}-token context "
            f"window of {model.id}",
            code="CONTEXT_LENGTH_EXCEEDED",
            param="messages",
        )
    description = f"{model.name} API call (~{input_tokens} input, {max_tokens} max output tokens)"
    return Quote(atomic_price(model, input_tokens, max_tokens), input_tokens, max_tokens, description)


def _tokens(chars: int, parts: int, messages: int) -> int:
    return math.ceil(chars / 4) + PER_MESSAGE_TOKENS * messages + MEDIA_PART_TOKENS * parts


def _max_tokens(model: ModelInfo, value: Any, *, required: bool) -> int:
    if value is None:
        if required:
            raise InvalidRequest("max_tokens: Field required", param="max_tokens")
        return min(model.fees.default_max_tokens, model.max_output)
    if type(value) is not int or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise InvalidRequest(
            f"max_tokens must be an integer between 1 and {MAX_TOKENS_LIMIT}, got {value!r}"[:200], param="max_tokens"
        )
    return min(value, model.max_output)


def _messages(body: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'", param="messages")
    return messages


def _tools_size(body: Mapping[str, Any]) -> tuple[int, int]:
    tools = body.get("tools")
    return (_json_len(tools) if tools else 0), 0


def _content_size(content: Any) -> tuple[int, int]:
    """UTF-8 bytes of text and the number of media parts in an OpenAI or Anthropic content value."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass")), 0
    if not isinstance(content, list):
        return _json_len(content), 0
    chars = parts = 0
    for part in content:
        if isinstance(part, str):
            chars += len(part.encode("utf-8", "surrogatepass"))
        elif not isinstance(part, Mapping):
            chars += _json_len(part)
        elif part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
            chars += len(part["text"].encode("utf-8", "surrogatepass"))
        elif part.get("type") == "tool_result":  # Anthropic: the result's own content is prompt text
            c, p = _content_size(part.get("content"))
            chars, parts = chars + c, parts + p
        elif part.get("type") in ("tool_use", "thinking", "redacted_thinking"):
            chars += _json_len(part)
        else:  # image_url, input_audio, file, image, document, ...
            parts += 1
    return chars, parts


def _json_len(value: Any) -> int:
    try:
        return len(
            json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
                "utf-8", "surrogatepass"
            )
        )
    except (TypeError, ValueError):  # pragma: no cover - parsed JSON always serialises
        return 0
