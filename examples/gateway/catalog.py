"""The model catalog: which models the gateway sells, at what price, served by which upstream pool.

The data lives in ``catalog.json`` next to this module (operators edit it, not
code). :func:`load_catalog` validates it once at start-up into frozen
dataclasses; money is :class:`~decimal.Decimal` parsed from strings, never a
float. Every error names the file and the offending entry::

    catalog = load_catalog()                      # the bundled catalog.json
    model = catalog.get("openai/gpt-5.5")         # ModelInfo or None
    model.input_per_m, model.output_per_m         # Decimal('5.00'), Decimal('30.00')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .media.catalog import MediaCatalogError, MediaModel, Voice, parse_media, parse_voices

DEFAULT_CATALOG = Path(__file__).with_name("catalog.json")
BILLING_MODES = ("free", "flat", "paid")
#: How a paid call is settled (``settle`` in a model's entry; the deployment's ``billing`` when absent): ``exact``
#: charges the quote; ``usage`` offers x402 ``upto`` with the quote as maximum and settles the actual usage.
SETTLEMENTS = ("exact", "usage")
ENDPOINT_KINDS = ("openai", "anthropic", "bedrock", "gemini")
AUTH_STYLES = ("bearer", "api-key", "x-api-key", "x-goog-api-key", "none")
# "provider/model", inside BlockRun's catalog validator's ^[a-zA-Z0-9][a-zA-Z0-9._+/-]*$ (blockrun-clients.md):
# its SDKs drop the whole model list when one id fails it.
_ID = re.compile(r"^[a-z0-9][a-z0-9._+-]*/[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_DECIMAL = re.compile(r"^[0-9]+(?:\.[0-9]+)?\Z")


class CatalogError(ValueError):
    """The catalog file is malformed; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class Fees:
    """Gateway-wide quote parameters (``fees`` in catalog.json). All USD amounts are Decimals."""

    gateway_fee_usd: Decimal = Decimal("0.001")
    min_charge_usd: Decimal = Decimal("0.001")
    output_share: Decimal = Decimal("0.1")
    default_max_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class LongContext:
    """Price multipliers applied when the estimated input exceeds ``threshold`` tokens."""

    threshold: int
    input_multiplier: Decimal
    output_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One sellable model. Rates are USD per 1M tokens; ``flat_usd`` is the all-in price of a flat call."""

    id: str
    name: str
    owned_by: str
    context_window: int
    max_output: int
    categories: tuple[str, ...]
    billing_mode: str
    pool: str
    upstream_model: str
    input_per_m: Decimal = Decimal(0)
    output_per_m: Decimal = Decimal(0)
    flat_usd: Decimal | None = None
    long_context: LongContext | None = None
    description: str = ""
    fees: Fees = field(default_factory=Fees, repr=False, compare=False)
    #: ``exact`` or ``usage`` for this model; ``None``: the deployment's billing (``GatewayConfig.billing``)
    settle: str | None = None

    @property
    def is_free(self) -> bool:
        return self.billing_mode == "free"


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One upstream endpoint of a pool, as written in catalog.json (secrets are env var *names*).

    A ``bedrock`` endpoint signs with the AWS credentials of the environment or the settings (``AWS_*``, see
    ``providers/bedrock.py``) and needs no ``base_url``; its ``models`` map catalog model ids to Bedrock model
    or inference profile ids, and it serves only those models.
    """

    name: str
    kind: str
    base_url: str | None = None
    base_url_env: str | None = None
    api_key_env: str | None = None
    auth: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    max_tokens_field: str = "max_tokens"
    api_key: str | None = field(
        default=None, repr=False
    )  # in-code pools only (tests, the emulator); files use api_key_env
    models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The validated catalog: models in file order, fees, and pools of upstream endpoints by family."""

    models: Mapping[str, ModelInfo]
    fees: Fees
    pools: Mapping[str, tuple[EndpointSpec, ...]]
    media: Mapping[str, MediaModel] = field(default_factory=dict)  # images, audio, video (media/catalog.py)
    voices: tuple[Voice, ...] = ()

    def get(self, model_id: str) -> ModelInfo | None:
        return self.models.get(model_id)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def load_catalog(path: str | Path = DEFAULT_CATALOG) -> Catalog:
    """Read and validate a catalog file; raises :class:`CatalogError` with the file name and the bad entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc}") from None
    except ValueError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc}") from None
    return parse_catalog(data, source=str(path))


def parse_catalog(data: Any, *, source: str = "catalog") -> Catalog:
    """Validate already-parsed catalog data (the JSON object of catalog.json)."""
    if not isinstance(data, Mapping):
        raise CatalogError(f"{source}: the top level must be a JSON object with 'models', 'pools' and 'fees'")
    fees = _fees(data.get("fees", {}), f"{source}: fees")
    pools = _pools(data.get("pools", {}), f"{source}: pools")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise CatalogError(f"{source}: 'models' must be a non-empty list of model objects")
    models: dict[str, ModelInfo] = {}
    for i, raw in enumerate(raw_models):
        where = f"{source}: models[{i}]"
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
            where += f" ({raw['id']})"
        model = _model(raw, fees, where)
        if model.id in models:
            raise CatalogError(f"{where}: duplicate model id {model.id!r}")
        if model.pool not in pools:
            raise CatalogError(f"{where}: pool {model.pool!r} is not defined under 'pools' (known: {', '.join(pools)})")
        models[model.id] = model
    for family, specs in pools.items():
        for spec in specs:
            unknown = sorted(m for m in spec.models if m not in models or models[m].pool != family)
            if unknown:
                raise CatalogError(
                    f"{source}: pools.{family} endpoint {spec.name!r}: models {', '.join(unknown)} are not models of "
                    f"the {family!r} pool; map this pool's catalog model ids only"
                )
    try:
        media = parse_media(data.get("media"), pools, fees.gateway_fee_usd, "media")
        voices = parse_voices(data.get("voices"), "voices")
    except MediaCatalogError as exc:
        raise CatalogError(f"{source}: {exc}") from None
    return Catalog(MappingProxyType(models), fees, MappingProxyType(pools), MappingProxyType(media), voices)


def _model(raw: Any, fees: Fees, where: str) -> ModelInfo:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: each model must be a JSON object")
    _no_unknown(
        raw,
        {
            "id",
            "name",
            "owned_by",
            "context_window",
            "max_output",
            "categories",
            "billing_mode",
            "pricing",
            "pool",
            "upstream_model",
            "long_context",
            "description",
            "settle",
        },
        where,
    )
    model_id = _str(raw, "id", where)
    if not _ID.match(model_id):
        raise CatalogError(
            f"{where}: id {model_id!r} must look like 'provider/model-name' (letters, digits and . _ + - only)"
        )
    mode = _str(raw, "billing_mode", where)
    if mode not in BILLING_MODES:
        raise CatalogError(f"{where}: billing_mode must be one of {', '.join(BILLING_MODES)}, got {mode!r}")
    pricing = raw.get("pricing", {})
    if not isinstance(pricing, Mapping):
        raise CatalogError(f'{where}: pricing must be an object such as {{"input": "2.50", "output": "10.00"}}')
    rates: dict[str, Any] = {}
    if mode == "paid":
        _no_unknown(pricing, {"input", "output"}, f"{where}: pricing")
        rates["input_per_m"] = _usd(pricing.get("input"), f"{where}: pricing.input")
        rates["output_per_m"] = _usd(pricing.get("output"), f"{where}: pricing.output")
    elif mode == "flat":
        _no_unknown(pricing, {"flat"}, f"{where}: pricing")
        rates["flat_usd"] = flat = _usd(pricing.get("flat"), f"{where}: pricing.flat")
        if flat.as_tuple().exponent < -6:  # type: ignore[operator]
            raise CatalogError(f"{where}: pricing.flat has more than 6 decimals (USDC's smallest unit is 0.000001)")
    elif pricing:
        raise CatalogError(f"{where}: a free model takes no pricing; remove it or change billing_mode")
    categories = raw.get("categories", ["chat"])
    if not isinstance(categories, list) or not categories or not all(isinstance(c, str) and c for c in categories):
        raise CatalogError(f'{where}: categories must be a non-empty list of strings such as ["chat"]')
    context_window = _int(raw, "context_window", where)
    max_output = _int(raw, "max_output", where)
    if max_output > context_window:
        raise CatalogError(f"{where}: max_output ({max_output}) exceeds context_window ({context_window})")
    settle = raw.get("settle")
    if settle is not None and settle not in SETTLEMENTS:
        raise CatalogError(f"{where}: settle must be one of {', '.join(SETTLEMENTS)}, got {settle!r}")
    name = raw.get("name", model_id)
    if not isinstance(name, str) or not name.isascii():
        raise CatalogError(f"{where}: name must be an ASCII string (it goes into x402 descriptions)")
    return ModelInfo(
        id=model_id,
        name=name,
        owned_by=_str(raw, "owned_by", where) if "owned_by" in raw else model_id.split("/", 1)[0],
        context_window=context_window,
        max_output=max_output,
        categories=tuple(categories),
        billing_mode=mode,
        pool=_str(raw, "pool", where) if "pool" in raw else model_id.split("/", 1)[0],
        upstream_model=_str(raw, "upstream_model", where) if "upstream_model" in raw else model_id.split("/", 1)[1],
        long_context=_long_context(raw.get("long_context"), f"{where}: long_context"),
        description=str(raw.get("description", "")),
        fees=fees,
        settle=settle,
        **rates,
    )


def _long_context(raw: Any, where: str) -> LongContext | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object with threshold, input_multiplier, output_multiplier")
    _no_unknown(raw, {"threshold", "input_multiplier", "output_multiplier"}, where)
    return LongContext(
        _int(raw, "threshold", where),
        _usd(raw.get("input_multiplier", "1"), f"{where}.input_multiplier"),
        _usd(raw.get("output_multiplier", "1"), f"{where}.output_multiplier"),
    )


def _fees(raw: Any, where: str) -> Fees:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object")
    _no_unknown(raw, {"gateway_fee_usd", "min_charge_usd", "output_share", "default_max_tokens"}, where)
    d = Fees()
    share = _usd(raw.get("output_share", str(d.output_share)), f"{where}.output_share")
    if share > 1:
        raise CatalogError(f'{where}.output_share is a fraction of max_tokens between 0 and 1, e.g. "0.1"')
    return Fees(
        gateway_fee_usd=_usd(raw.get("gateway_fee_usd", str(d.gateway_fee_usd)), f"{where}.gateway_fee_usd"),
        min_charge_usd=_usd(raw.get("min_charge_usd", str(d.min_charge_usd)), f"{where}.min_charge_usd"),
        output_share=share,
        default_max_tokens=_int(raw, "default_max_tokens", where)
        if "default_max_tokens" in raw
        else d.default_max_tokens,
    )


def _pools(raw: Any, where: str) -> dict[str, tuple[EndpointSpec, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise CatalogError(f"{where}: must be an object mapping a family name to a list of endpoints")
    pools: dict[str, tuple[EndpointSpec, ...]] = {}
    for family, endpoints in raw.items():
        if not isinstance(endpoints, list) or not endpoints:
            raise CatalogError(f"{where}.{family}: must be a non-empty list of endpoint objects")
        pools[family] = tuple(endpoint_spec(e, f"{where}.{family}[{i}]") for i, e in enumerate(endpoints))
        names = [e.name for e in pools[family]]
        if len(set(names)) != len(names):
            raise CatalogError(f"{where}.{family}: endpoint names must be unique within a pool")
    return pools


def endpoint_spec(raw: Any, where: str = "endpoint") -> EndpointSpec:
    """Validate one endpoint object (also used for pools given in code, e.g. the emulator's)."""
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object with name, kind and base_url or base_url_env")
    if "api_key" in raw:
        raise CatalogError(
            f"{where}: do not put API keys in the catalog; name an environment variable in 'api_key_env'"
        )
    _no_unknown(
        raw,
        {"name", "kind", "base_url", "base_url_env", "api_key_env", "auth", "headers", "max_tokens_field", "models"},
        where,
    )
    kind = _str(raw, "kind", where)
    if kind not in ENDPOINT_KINDS:
        raise CatalogError(f"{where}: kind must be one of {', '.join(ENDPOINT_KINDS)}, got {kind!r}")
    models = raw.get("models", {})
    if kind == "bedrock":
        if raw.get("api_key_env") or raw.get("auth"):
            raise CatalogError(f"{where}: a bedrock endpoint signs with AWS credentials (AWS_*), not an API key")
        if not isinstance(models, Mapping) or not models:
            raise CatalogError(
                f'{where}: a bedrock endpoint needs "models": {{"<catalog id>": "<Bedrock model or inference '
                f'profile id>", ...}}'
            )
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in models.items()):
            raise CatalogError(f"{where}: models must map catalog model ids to Bedrock model id strings")
    else:
        if models:
            raise CatalogError(f"{where}: 'models' is for bedrock endpoints only")
        if not raw.get("base_url") and not raw.get("base_url_env"):
            raise CatalogError(f"{where}: needs 'base_url' or 'base_url_env'")
    auth = raw.get("auth", "")
    if auth and auth not in AUTH_STYLES:
        raise CatalogError(f"{where}: auth must be one of {', '.join(AUTH_STYLES)}, got {auth!r}")
    headers = raw.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise CatalogError(f"{where}: headers must map header names to string values")
    field_name = raw.get("max_tokens_field", "max_tokens")
    if field_name not in ("max_tokens", "max_completion_tokens"):
        raise CatalogError(f"{where}: max_tokens_field must be 'max_tokens' or 'max_completion_tokens'")
    return EndpointSpec(
        name=_str(raw, "name", where),
        kind=kind,
        base_url=raw.get("base_url") or None,
        base_url_env=raw.get("base_url_env") or None,
        api_key_env=raw.get("api_key_env") or None,
        auth=auth,
        headers=MappingProxyType(dict(headers)),
        max_tokens_field=field_name,
        models=MappingProxyType(dict(models)),
    )


def _no_unknown(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(k for k in raw if k not in allowed and not str(k).startswith("_"))
    if unknown:
        raise CatalogError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
        )


def _str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _int(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = raw.get(key)
    if type(value) is not int or value <= 0:
        raise CatalogError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def _usd(value: Any, where: str) -> Decimal:
    # Strings only: a JSON number would be read as a float by most tools, and money is never a float here.
    if not isinstance(value, str) or not _DECIMAL.match(value.strip()):
        raise CatalogError(f'{where}: must be a decimal string such as "2.50" (quote the number), got {value!r}')
    try:
        return Decimal(value.strip())
    except InvalidOperation:  # pragma: no cover - the regex already rules this out
        raise CatalogError(f"{where}: {value!r} is not a decimal amount") from None
