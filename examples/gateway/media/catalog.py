"""Media models in the catalog (``"media"`` and ``"voices"`` in catalog.json): what they cost is data, not code.

Each entry names its ``kind`` (``image``, ``audio``, ``video``), the pool of OpenAI-compatible endpoints that
serves it, and one of three price shapes (USD as decimal strings, the catalog's ``gateway_fee_usd`` on top)::

    {"per_image": {"1024x1024": {"low": "0.011", "high": "0.167"}, "1536x1024": "0.06"}}   # by size (and quality)
    {"per_second": "0.10"}                                                                 # audio or video seconds
    {"flat": "0.015"}                                                                      # per call

``default_size``/``default_quality``/``max_n`` (images) and ``default_seconds``/``max_seconds``/``seconds``
(audio, video) bound what a request may ask for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

MEDIA_KINDS = ("image", "audio", "video")
_ID = re.compile(r"^[a-z0-9][a-z0-9._+-]*/[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_DECIMAL = re.compile(r"^[0-9]+(?:\.[0-9]+)?\Z")
_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}\Z")
_FIELDS = {
    "id",
    "name",
    "owned_by",
    "kind",
    "pool",
    "upstream_model",
    "pricing",
    "description",
    "default_size",
    "default_quality",
    "max_n",
    "default_seconds",
    "max_seconds",
    "seconds",
}


class MediaCatalogError(ValueError):
    """A media entry is malformed; raised as the catalog's ``CatalogError`` with the file name."""


@dataclass(frozen=True, slots=True)
class MediaModel:
    """One sellable media model. ``per_image`` maps size -> quality -> USD (quality ``""`` when not priced by it)."""

    id: str
    name: str
    owned_by: str
    kind: str
    pool: str
    upstream_model: str
    description: str = ""
    per_image: Mapping[str, Mapping[str, Decimal]] | None = None
    per_second: Decimal | None = None
    flat: Decimal | None = None
    default_size: str = ""
    default_quality: str = ""
    max_n: int = 1
    default_seconds: int = 0
    max_seconds: int = 0
    seconds: tuple[int, ...] = ()
    fee: Decimal = field(default=Decimal(0), compare=False)

    @property
    def default_usd(self) -> Decimal:
        """What a call with the defaults costs, the gateway fee included (the ``flat`` of its ``/v1/models`` row)."""
        if self.per_image is not None:
            return self.per_image[self.default_size][self.default_quality] + self.fee
        if self.per_second is not None:
            return self.per_second * self.default_seconds + self.fee
        assert self.flat is not None
        return self.flat + self.fee


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice for ``/v1/audio/voices`` (and the check of ``voice`` in an audio request)."""

    id: str
    name: str
    provider: str
    language: str = "en"


def parse_media(raw: Any, pools: Mapping[str, Any], fee: Decimal, where: str) -> dict[str, MediaModel]:
    """Validate the ``media`` list; every model's pool must exist and be served by ``openai``-kind endpoints."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise MediaCatalogError(f"{where}: must be a list of media model objects")
    out: dict[str, MediaModel] = {}
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]" + (f" ({entry['id']})" if isinstance(entry, Mapping) and "id" in entry else "")
        model = _model(entry, fee, at)
        if model.id in out:
            raise MediaCatalogError(f"{at}: duplicate media model id {model.id!r}")
        if model.pool not in pools:
            raise MediaCatalogError(f"{at}: pool {model.pool!r} is not defined under 'pools'")
        if any(spec.kind != "openai" for spec in pools[model.pool]):
            raise MediaCatalogError(f"{at}: media is served by OpenAI-compatible endpoints; pool {model.pool!r} is not")
        out[model.id] = model
    return out


def parse_voices(raw: Any, where: str) -> tuple[Voice, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MediaCatalogError(f"{where}: must be a list of voice objects")
    voices = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), str) for k in ("id", "name", "provider")):
            raise MediaCatalogError(f"{where}[{i}]: a voice needs string id, name and provider")
        voices.append(Voice(entry["id"], entry["name"], entry["provider"], str(entry.get("language", "en"))))
    return tuple(voices)


def _model(raw: Any, fee: Decimal, where: str) -> MediaModel:
    if not isinstance(raw, Mapping):
        raise MediaCatalogError(f"{where}: each media model must be a JSON object")
    unknown = sorted(k for k in raw if k not in _FIELDS and not str(k).startswith("_"))
    if unknown:
        raise MediaCatalogError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    model_id = _str(raw, "id", where)
    if not _ID.match(model_id):
        raise MediaCatalogError(f"{where}: id {model_id!r} must look like 'provider/model-name'")
    kind = _str(raw, "kind", where)
    if kind not in MEDIA_KINDS:
        raise MediaCatalogError(f"{where}: kind must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}")
    name = _str(raw, "name", where)
    if not name.isascii():
        raise MediaCatalogError(f"{where}: name must be ASCII (it goes into x402 descriptions)")
    pricing = raw.get("pricing")
    if not isinstance(pricing, Mapping) or len(pricing) != 1:
        raise MediaCatalogError(
            f'{where}: pricing must be one of {{"per_image": ...}}, {{"per_second": "0.1"}}, {{"flat": "0.01"}}'
        )
    shape, value = next(iter(pricing.items()))
    fields: dict[str, Any] = {}
    if shape == "per_image" and kind == "image":
        fields["per_image"] = _per_image(value, f"{where}: pricing.per_image")
        sizes = fields["per_image"]
        fields["default_size"] = size = str(raw.get("default_size", next(iter(sizes))))
        if size not in sizes:
            raise MediaCatalogError(f"{where}: default_size {size!r} is not priced")
        qualities = sizes[size]
        fields["default_quality"] = quality = str(raw.get("default_quality", next(iter(qualities))))
        if quality not in qualities:
            raise MediaCatalogError(f"{where}: default_quality {quality!r} is not priced for {size}")
    elif shape == "per_second" and kind in ("audio", "video"):
        fields["per_second"] = _usd(value, f"{where}: pricing.per_second")
    elif shape == "flat":
        fields["flat"] = _usd(value, f"{where}: pricing.flat")
    else:
        raise MediaCatalogError(f"{where}: pricing {shape!r} does not apply to {kind} models")
    if kind == "image":
        fields["max_n"] = _int(raw, "max_n", where, 1)
    else:
        seconds = raw.get("seconds", [])
        if not isinstance(seconds, list) or not all(type(s) is int and s > 0 for s in seconds):
            raise MediaCatalogError(f"{where}: seconds must be a list of positive integers (the lengths offered)")
        fields["seconds"] = tuple(seconds)
        fields["max_seconds"] = _int(raw, "max_seconds", where, max(seconds, default=60))
        fields["default_seconds"] = _int(raw, "default_seconds", where, min(seconds, default=fields["max_seconds"]))
        if fields["default_seconds"] > fields["max_seconds"]:
            raise MediaCatalogError(f"{where}: default_seconds exceeds max_seconds")
    return MediaModel(
        id=model_id,
        name=name,
        owned_by=str(raw.get("owned_by", model_id.split("/", 1)[0])),
        kind=kind,
        pool=_str(raw, "pool", where),
        upstream_model=str(raw.get("upstream_model", model_id.split("/", 1)[1])),
        description=str(raw.get("description", "")),
        fee=fee,
        **fields,
    )


def _per_image(raw: Any, where: str) -> Mapping[str, Mapping[str, Decimal]]:
    if not isinstance(raw, Mapping) or not raw:
        raise MediaCatalogError(f'{where}: must map sizes such as "1024x1024" to a price or {{quality: price}}')
    out: dict[str, Mapping[str, Decimal]] = {}
    for size, prices in raw.items():
        if not _SIZE.match(str(size)):
            raise MediaCatalogError(f"{where}: {size!r} is not a size such as '1024x1024'")
        if isinstance(prices, str):
            out[size] = MappingProxyType({"": _usd(prices, f"{where}.{size}")})
        elif isinstance(prices, Mapping) and prices:
            out[size] = MappingProxyType({str(q): _usd(p, f"{where}.{size}.{q}") for q, p in prices.items()})
        else:
            raise MediaCatalogError(f"{where}.{size}: must be a price string or a non-empty {{quality: price}}")
    return MappingProxyType(out)


def _str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MediaCatalogError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _int(raw: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = raw.get(key, default)
    if type(value) is not int or value <= 0:
        raise MediaCatalogError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def _usd(value: Any, where: str) -> Decimal:
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise MediaCatalogError(f'{where}: must be a decimal string such as "0.04", got {value!r}')
    amount = Decimal(value)
    if amount.as_tuple().exponent < -6:  # type: ignore[operator]
        raise MediaCatalogError(f"{where}: more than 6 decimals (USDC's smallest unit is 0.000001)")
    return amount
