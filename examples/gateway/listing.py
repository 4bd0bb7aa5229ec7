"""The public catalog views: ``GET /v1/models`` (BlockRun shape) and ``GET /api/pricing``.

Prices are written as exact JSON numbers straight from the catalog's Decimals
(``5.00``), never through a float. Both bodies are rendered once per app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .catalog import ModelInfo
from .media.catalog import MediaModel

CREATED = 1_700_000_000  # a fixed "created" so the listing is byte-for-byte stable
_MARK = re.compile(r'"\\u0000DEC:([0-9.]+)\\u0000"')


def dumps_exact(obj: Any) -> bytes:
    """JSON with every :class:`~decimal.Decimal` as a plain number literal (``Decimal("1.50")`` -> ``1.5``)."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"\x00DEC:{value.normalize():f}\x00"
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    text = json.dumps(obj, default=mark, ensure_ascii=True, separators=(",", ":"))
    return _MARK.sub(r"\1", text).encode()


def model_row(model: ModelInfo) -> dict[str, Any]:
    """One ``/v1/models`` row: what the BlockRun SDKs read (blockrun-clients.md §3.3)."""
    pricing: dict[str, Any]
    if model.billing_mode == "paid":
        pricing = {"input": model.input_per_m, "output": model.output_per_m}
        if model.long_context is not None:
            lc = model.long_context
            pricing["long_context"] = [
                {
                    "above_input_tokens": lc.threshold,
                    "input": model.input_per_m * lc.input_multiplier,
                    "output": model.output_per_m * lc.output_multiplier,
                }
            ]
    elif model.billing_mode == "flat":
        pricing = {"flat": model.flat_usd, "input": 0, "output": 0}
    else:
        pricing = {"input": 0, "output": 0}
    return {
        "id": model.id,
        "object": "model",
        "created": CREATED,
        "owned_by": model.owned_by,
        "name": model.name,
        "description": model.description or f"{model.name} via x402 pay-per-call",
        "context_window": model.context_window,
        "max_output": model.max_output,
        "categories": list(model.categories),
        "billing_mode": model.billing_mode,
        "pricing": pricing,
        "available": True,
    }


def pricing_row(model: ModelInfo) -> dict[str, Any]:
    """One ``/api/pricing`` row (camelCase, as the Python SDK's standalone ``list_models`` reads it)."""
    row: dict[str, Any] = {
        "id": model.id,
        "name": model.name,
        "provider": model.owned_by,
        "billingMode": model.billing_mode,
        "inputPrice": model.input_per_m,
        "outputPrice": model.output_per_m,
        "contextWindow": model.context_window,
        "maxOutput": model.max_output,
        "categories": list(model.categories),
    }
    if model.flat_usd is not None:
        row["flatPrice"] = model.flat_usd
    if model.long_context is not None:
        lc = model.long_context
        row.update(
            longContextThreshold=lc.threshold,
            longContextThresholdInclusive=False,
            longContextInputPrice=model.input_per_m * lc.input_multiplier,
            longContextOutputPrice=model.output_per_m * lc.output_multiplier,
        )
    return row


def media_row(model: MediaModel) -> dict[str, Any]:
    """A media model in ``/v1/models``, where BlockRun's SDKs look for them (``categories: ["image"]``, ...).

    ``flat`` (numeric, as BlockRun's catalog validator wants of a ``flat`` row) is a call with the defaults, fee
    included; the exact rates are beside it and in ``/v1/{images,video,audio}/models``.
    """
    pricing: dict[str, Any] = {"flat": model.default_usd}
    if model.per_image is not None:
        pricing["per_image"] = {s: p[""] if list(p) == [""] else dict(p) for s, p in model.per_image.items()}
    elif model.per_second is not None:
        pricing["per_second"] = model.per_second
    return {
        "id": model.id,
        "object": "model",
        "created": CREATED,
        "owned_by": model.owned_by,
        "name": model.name,
        "description": model.description or f"{model.name} via x402 pay-per-call",
        "categories": [model.kind],
        "billing_mode": "flat",
        "pricing": pricing,
        "available": True,
    }


def models_body(models: Iterable[ModelInfo], media: Iterable[MediaModel] = ()) -> bytes:
    return dumps_exact({"object": "list", "data": [model_row(m) for m in models] + [media_row(m) for m in media]})


def pricing_body(models: Iterable[ModelInfo], fee: Decimal, floor: Decimal) -> bytes:
    return dumps_exact(
        {
            "currency": "USD",
            "unit": "per 1M tokens",
            "requestFee": fee,
            "minimumCharge": floor,
            "models": [pricing_row(m) for m in models],
        }
    )
