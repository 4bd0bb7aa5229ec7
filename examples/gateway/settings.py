"""Operator settings for ``python -m examples.gateway`` and the dev mode: a TOML file, the environment, the flags.

Every option can be set in an optional TOML file (``--config PATH`` or ``GATEWAY_CONFIG``), overridden by its
environment variable, overridden by a command-line flag. ``--print-config`` prints the result, secrets masked::

    catalog = "/etc/x402-gateway/catalog.json"     # GATEWAY_CATALOG
    pay_to = "0xYourAddress"                        # GATEWAY_PAY_TO
    networks = ["eip155:8453"]                      # GATEWAY_NETWORKS (comma-separated)
    trusted_proxies = ["10.0.0.5", "10.1.0.0/16"]  # GATEWAY_TRUSTED_PROXIES
    log_format = "json"                             # GATEWAY_LOG_FORMAT: json | text
    log_level = "info"                              # GATEWAY_LOG_LEVEL
    host = "127.0.0.1"                              # GATEWAY_HOST
    port = 8402                                     # GATEWAY_PORT
    redis_url = "redis://10.0.0.7:6379/0"           # GATEWAY_REDIS_URL (its password is a secret)
    billing = "exact"                               # GATEWAY_BILLING: exact (the quote) | usage (x402 upto)

    [facilitator]                                   # a remote facilitator ...
    url = "https://x402.org/facilitator"            # GATEWAY_FACILITATOR_URL
    token = "..."                                   # GATEWAY_FACILITATOR_TOKEN (sent as a Bearer token; secret)
    address = "0x..."                               # GATEWAY_FACILITATOR_ADDRESS: its upto settling address
                                                    # (its /supported lists it; needed for billing = "usage")
    # ... or settle on chain yourself (one network):
    # rpc_url = "https://mainnet.base.org"          # GATEWAY_FACILITATOR_RPC_URL
    # private_keys = ["0x..."]                      # GATEWAY_FACILITATOR_KEYS (comma-separated; secret)

    [rate_limits]                                   # per client IP
    catalog = {limit = 100, window = 3600}          # GATEWAY_CATALOG_RATE_LIMIT="100/3600"
    health = {limit = 60, window = 60}              # GATEWAY_HEALTH_RATE_LIMIT="60/60"

    [bedrock]                                       # Claude on Amazon Bedrock, first in the anthropic pool
    region = "us-east-1"                            # AWS_REGION
    access_key_id = "AKIA..."                       # AWS_ACCESS_KEY_ID
    secret_access_key = "..."                       # AWS_SECRET_ACCESS_KEY (secret)
    session_token = "..."                           # AWS_SESSION_TOKEN (temporary credentials; secret)
    endpoint_url = "https://bedrock-runtime..."     # BEDROCK_ENDPOINT_URL (default: the region's endpoint)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from x402_middleware import ConfigurationError
from x402_middleware.networks import check_address, get_network

from .catalog import SETTLEMENTS
from .config import GatewayConfig, RateLimit
from .providers.bedrock import (
    ACCESS_KEY_ENV,
    ENDPOINT_ENV,
    REGION_ENV,
    SECRET_KEY_ENV,
    SESSION_TOKEN_ENV,
    BedrockConfig,
)

_DEFAULTS = GatewayConfig  # the gateway's own defaults for the options both share (class attributes)

LOG_FORMATS = ("json", "text")
CONFIG_ENV = "GATEWAY_CONFIG"
_MASK = "********"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*\Z")


class SettingsError(ValueError):
    """A setting is wrong; the message names the option, where it came from, and an accepted form."""


@dataclass(frozen=True)
class Settings:
    """The effective operator settings; ``sources`` says where each one came from (file, env, flag, default)."""

    catalog: str | None = None
    pay_to: str | None = None
    networks: tuple[str, ...] = ("eip155:8453",)
    facilitator_url: str | None = None
    facilitator_token: str | None = field(default=None, repr=False)
    facilitator_rpc_url: str | None = None
    facilitator_keys: tuple[str, ...] = field(default=(), repr=False)
    catalog_rate_limit: RateLimit = _DEFAULTS.catalog_rate_limit
    health_rate_limit: RateLimit = _DEFAULTS.health_rate_limit
    trusted_proxies: tuple[str, ...] = ()
    log_format: str = "json"
    log_level: str = "info"
    host: str = "127.0.0.1"
    port: int = 0
    redis_url: str | None = field(default=None, repr=False)
    bedrock_region: str | None = None
    bedrock_endpoint_url: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    billing: str = _DEFAULTS.billing
    facilitator_address: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def paid(self) -> bool:
        """Whether payment is configured (``pay_to`` and a facilitator)."""
        return self.pay_to is not None and (self.facilitator_url is not None or bool(self.facilitator_keys))

    @property
    def bedrock(self) -> BedrockConfig | None:
        """Bedrock's AWS credentials and region, when an access key is set (raises ``ConfigurationError`` if half)."""
        values = {
            ACCESS_KEY_ENV: self.aws_access_key_id,
            SECRET_KEY_ENV: self.aws_secret_access_key,
            SESSION_TOKEN_ENV: self.aws_session_token,
            REGION_ENV: self.bedrock_region,
            ENDPOINT_ENV: self.bedrock_endpoint_url,
        }
        return BedrockConfig.from_env({k: v for k, v in values.items() if v})

    def masked(self) -> dict[str, Any]:
        """The settings as ``--print-config`` shows them: secrets masked, with their sources."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if isinstance(value, RateLimit):
                value = {"limit": value.limit, "window": value.window}
            elif isinstance(value, tuple):
                value = list(value)
            if f.name in ("facilitator_token", "aws_secret_access_key", "aws_session_token") and value:
                value = _MASK
            elif f.name == "aws_access_key_id" and value:
                value = _MASK + value[-4:]  # the key id names the key; its last characters tell which one
            elif f.name == "facilitator_keys":
                value = [_MASK for _ in value]
            elif f.name == "redis_url" and value:
                value = _mask_url(value)
            out[f.name] = value
        out["paid"] = self.paid
        out["sources"] = dict(sorted(self.sources.items()))
        return out


#: option -> (environment variable, parser of its text)
_ENV = {
    "catalog": "GATEWAY_CATALOG",
    "pay_to": "GATEWAY_PAY_TO",
    "networks": "GATEWAY_NETWORKS",
    "facilitator_url": "GATEWAY_FACILITATOR_URL",
    "facilitator_token": "GATEWAY_FACILITATOR_TOKEN",
    "facilitator_rpc_url": "GATEWAY_FACILITATOR_RPC_URL",
    "facilitator_keys": "GATEWAY_FACILITATOR_KEYS",
    "catalog_rate_limit": "GATEWAY_CATALOG_RATE_LIMIT",
    "health_rate_limit": "GATEWAY_HEALTH_RATE_LIMIT",
    "trusted_proxies": "GATEWAY_TRUSTED_PROXIES",
    "log_format": "GATEWAY_LOG_FORMAT",
    "log_level": "GATEWAY_LOG_LEVEL",
    "host": "GATEWAY_HOST",
    "port": "GATEWAY_PORT",
    "redis_url": "GATEWAY_REDIS_URL",
    "bedrock_region": REGION_ENV,
    "bedrock_endpoint_url": ENDPOINT_ENV,
    "aws_access_key_id": ACCESS_KEY_ENV,
    "aws_secret_access_key": SECRET_KEY_ENV,
    "aws_session_token": SESSION_TOKEN_ENV,
    "billing": "GATEWAY_BILLING",
    "facilitator_address": "GATEWAY_FACILITATOR_ADDRESS",
}
#: [section] of the config file -> its keys -> the option each sets
_SECTIONS = {
    "facilitator": {
        "url": "facilitator_url",
        "token": "facilitator_token",
        "rpc_url": "facilitator_rpc_url",
        "private_keys": "facilitator_keys",
        "address": "facilitator_address",
    },
    "rate_limits": {"catalog": "catalog_rate_limit", "health": "health_rate_limit"},
    "bedrock": {
        "region": "bedrock_region",
        "endpoint_url": "bedrock_endpoint_url",
        "access_key_id": "aws_access_key_id",
        "secret_access_key": "aws_secret_access_key",
        "session_token": "aws_session_token",
    },
}
_IN_SECTIONS = {option for keys in _SECTIONS.values() for option in keys.values()}
_LISTS = {"networks", "facilitator_keys", "trusted_proxies"}


def load_settings(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None
) -> Settings:
    """File (``path``, else ``$GATEWAY_CONFIG``, else none), then the environment, then ``flags`` (non-``None`` wins).

    Raises :class:`SettingsError` with the option, its source and an accepted form.
    """
    import os

    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = path if path is not None else env.get(CONFIG_ENV) or None
    if path is not None:
        for key, value in _read_file(Path(path)).items():
            raw[key], sources[key] = value, f"file {path}"
    for key, var in _ENV.items():
        if var in env and env[var].strip():
            raw[key], sources[key] = _from_env(key, env[var]), f"env {var}"
    for key, value in (flags or {}).items():
        if value is not None and value != [] and value != ():
            raw[key], sources[key] = value, "flag"
    settings = Settings(sources={k: sources.get(k, "default") for k in _ENV})
    changes = {key: _check(key, value, sources[key]) for key, value in raw.items()}
    settings = replace(settings, **changes)
    if settings.facilitator_url and settings.facilitator_keys:
        raise SettingsError("facilitator: give either url (+ token) or rpc_url + private_keys, not both")
    if settings.facilitator_keys and not settings.facilitator_rpc_url:
        raise SettingsError("facilitator.private_keys need facilitator.rpc_url (the node that settles on chain)")
    if settings.facilitator_keys and len(settings.networks) != 1:
        raise SettingsError("an on-chain facilitator settles on one network; set networks to exactly one")
    try:
        settings.bedrock  # noqa: B018 - checked now: half a Bedrock configuration is an error at start-up
    except ConfigurationError as exc:
        where = ", ".join(f"{k} from {settings.sources[k]}" for k in _SECTIONS["bedrock"].values() if k in raw)
        raise SettingsError(f"{exc} ({where})") from None
    return settings


def configure_logging(settings: Settings) -> None:
    """Root logging to stderr: ``json`` (one object per line; the request log's own JSON kept as is) or ``text``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JSONFormatter()
        if settings.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is the gateway's, not httpx's


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "examples.gateway" and message.startswith("{"):
            return message  # the request log line is JSON already
        line = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                name = _SECTIONS[key].get(sub)
                if name is None:
                    raise SettingsError(
                        f"config file {path}: unknown [{key}] key {sub!r} ({', '.join(_SECTIONS[key])})"
                    )
                flat[name] = v
        elif key in _ENV and key not in _IN_SECTIONS:
            flat[key] = value
        else:
            known = sorted(k for k in _ENV if k not in _IN_SECTIONS)
            raise SettingsError(
                f"config file {path}: unknown key {key!r}; known: {', '.join(known)}, "
                + ", ".join(f"[{section}]" for section in _SECTIONS)
            )
    return flat


def _from_env(key: str, text: str) -> Any:
    if key in _LISTS:
        return [part.strip() for part in text.split(",") if part.strip()]
    if key.endswith("_rate_limit"):
        m = _RATE.match(text)
        if m is None:
            raise SettingsError(f"{_ENV[key]}={text!r}: write LIMIT/WINDOW_SECONDS, e.g. 100/3600")
        return {"limit": int(m.group(1)), "window": float(m.group(2))}
    if key == "port":
        if not text.strip().isdigit():
            raise SettingsError(f"{_ENV[key]}={text!r}: must be a port number")
        return int(text)
    return text.strip()


def _check(key: str, value: Any, source: str) -> Any:
    where = f"{key} (from {source})"
    if key in _LISTS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise SettingsError(f"{where}: must be a list of strings")
        value = tuple(value)
        if key == "networks":
            if not value:
                raise SettingsError(f"{where}: name at least one network, e.g. eip155:8453")
            for network in value:
                try:
                    get_network(network)
                except ConfigurationError as exc:
                    raise SettingsError(f"{where}: {exc}") from None
        if key == "trusted_proxies":
            for proxy in value:
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise SettingsError(f"{where}: {proxy!r} is not an IP address or CIDR such as 10.0.0.0/8") from None
        return value
    if key.endswith("_rate_limit"):
        if not isinstance(value, Mapping) or type(value.get("limit")) is not int or value["limit"] < 1:
            raise SettingsError(f"{where}: must be {{limit = 100, window = 3600}} with limit >= 1")
        window = value.get("window")
        if not isinstance(window, (int, float)) or isinstance(window, bool) or window <= 0:
            raise SettingsError(f"{where}: window must be a positive number of seconds")
        return RateLimit(value["limit"], float(window))
    if key == "port":
        if type(value) is not int or not 0 <= value <= 65535:
            raise SettingsError(f"{where}: must be a port number between 0 and 65535")
        return value
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{where}: must be a non-empty string")
    value = value.strip()
    if key == "billing" and value not in SETTLEMENTS:
        raise SettingsError(f"{where}: must be one of {', '.join(SETTLEMENTS)}")
    if key in ("pay_to", "facilitator_address"):
        try:
            return check_address(value, key)
        except ConfigurationError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    if key == "log_format" and value not in LOG_FORMATS:
        raise SettingsError(f"{where}: must be one of {', '.join(LOG_FORMATS)}")
    if key == "log_level" and value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{where}: must be debug, info, warning or error")
    if key in ("facilitator_url", "facilitator_rpc_url", "bedrock_endpoint_url") and not value.startswith(
        ("http://", "https://")
    ):
        raise SettingsError(f"{where}: must be an http:// or https:// URL")
    if key == "catalog" and not Path(value).is_file():
        raise SettingsError(f"{where}: {value} is not a file")
    return value


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:{_MASK}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
