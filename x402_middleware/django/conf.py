"""The one Django setting, ``X402``, read and validated in one place.

``settings.X402`` is a dict::

    X402 = {
        "ROUTES": {"GET /api/weather": "$0.001"},      # required: pattern -> price, policy or RouteConfig
        "PAY_TO": "0xYourAddress",                      # required unless every route sets its own pay_to
        "NETWORK": "eip155:84532",                      # or a list; default "eip155:8453" (Base)
        "FACILITATOR_URL": "https://x402.org/facilitator",
        # or objects / dotted paths (a class is instantiated without arguments):
        # "FACILITATOR": ...,       async facilitator, used when Django runs under ASGI
        # "SYNC_FACILITATOR": ...,  blocking facilitator, used when Django runs under WSGI
        # "STORE": ..., "SETTLE_WHEN": ..., "MAX_TIMEOUT_SECONDS": 300, "RESOURCE_URL": None, "MAX_PRICING_BODY": 1 MiB
        # "CHECK_FUNDS": False,  # ask the facilitator whether the payer can pay before a view runs
        # "LISTENERS": [...],     # callables or dotted paths given each x402_middleware.events.PaymentEvent
        # "JOURNAL": ...,         # a settlement journal (object or dotted path), e.g. SQLiteJournal(path):
        #                         # records every payment and serves a lost settled response again
    }

:func:`problems` lists what is wrong (the system checks report it with stable ids);
:func:`build` turns a valid setting into what the middleware uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .._config import MAX_PRICING_BODY, PaymentConfig, build_config
from .._exceptions import ConfigurationError
from .._flow import settle_on_2xx
from .._gate import Gate
from ..networks import check_address, get_network

SETTING = "X402"
KNOWN_KEYS = frozenset(
    {
        "ROUTES",
        "PAY_TO",
        "NETWORK",
        "FACILITATOR_URL",
        "FACILITATOR",
        "SYNC_FACILITATOR",
        "STORE",
        "SETTLE_WHEN",
        "MAX_TIMEOUT_SECONDS",
        "RESOURCE_URL",
        "MAX_PRICING_BODY",
        "CHECK_FUNDS",
        "LISTENERS",
        "JOURNAL",
    }
)

# Stable check ids (documented; never renumber).
E_SETTING = "x402.E001"  # X402 missing or not a dict
E_UNKNOWN_KEY = "x402.E002"  # a key we do not know (likely a typo)
E_ROUTES = "x402.E003"  # ROUTES missing, empty, or a bad pattern/price
E_PAY_TO = "x402.E004"  # PAY_TO not an address
E_NETWORK = "x402.E005"  # NETWORK unknown
E_FACILITATOR = "x402.E006"  # no facilitator, or the wrong kind, or not importable
E_OPTION = "x402.E007"  # MAX_TIMEOUT_SECONDS / MAX_PRICING_BODY / RESOURCE_URL / SETTLE_WHEN invalid
E_STORE = "x402.E008"  # STORE is not a payment store
W_ONE_MODE = "x402.W001"  # only an async or only a sync facilitator: works under ASGI or WSGI only
W_NO_MIDDLEWARE = "x402.W002"  # the app is installed but the middleware is not in MIDDLEWARE


@dataclass(frozen=True)
class Problem:
    id: str
    message: str
    hint: str


def raw_setting() -> Any:
    return getattr(settings, SETTING, None)


def _load(value: Any) -> Any:
    """An object, or a dotted path to one; a class is instantiated without arguments."""
    obj = import_string(value) if isinstance(value, str) else value
    return obj() if inspect.isclass(obj) else obj


def _facilitators(conf: Mapping[str, Any]) -> tuple[Any, Any, list[Problem]]:
    """(async, sync, problems). URL-built facilitators are made lazily by :func:`build`, so ``None`` here."""
    found: list[Problem] = []
    async_fac = sync_fac = None
    for key, want_async in (("FACILITATOR", True), ("SYNC_FACILITATOR", False)):
        if conf.get(key) is None:
            continue
        try:
            obj = _load(conf[key])
        except (ImportError, TypeError, ValueError) as exc:
            found.append(
                Problem(
                    E_FACILITATOR,
                    f"X402['{key}'] cannot be loaded: {exc}",
                    "Give an object or a dotted path such as 'myproject.payments.facilitator'.",
                )
            )
            continue
        settle = getattr(obj, "settle", None)
        if not callable(settle) or inspect.iscoroutinefunction(settle) != want_async:
            kind = (
                "an async facilitator (async def settle), e.g. HTTPFacilitator"
                if want_async
                else "a blocking facilitator (def settle), e.g. SyncHTTPFacilitator"
            )
            found.append(
                Problem(
                    E_FACILITATOR,
                    f"X402['{key}'] must be {kind}; got {type(obj).__name__}",
                    "FACILITATOR is used under ASGI, SYNC_FACILITATOR under WSGI.",
                )
            )
            continue
        if want_async:
            async_fac = obj
        else:
            sync_fac = obj
    url = conf.get("FACILITATOR_URL")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        found.append(
            Problem(
                E_FACILITATOR,
                f"X402['FACILITATOR_URL'] must be an http(s) URL, got {url!r}",
                "For example 'https://x402.org/facilitator'.",
            )
        )
    elif (
        url is None
        and async_fac is None
        and sync_fac is None
        and not any(conf.get(k) is not None for k in ("FACILITATOR", "SYNC_FACILITATOR"))
    ):
        found.append(
            Problem(
                E_FACILITATOR,
                "X402 names no facilitator to verify and settle payments",
                "Set X402['FACILITATOR_URL'], or X402['FACILITATOR'] (ASGI) / X402['SYNC_FACILITATOR'] (WSGI).",
            )
        )
    return async_fac, sync_fac, found


def problems(conf: Any = None) -> list[Problem]:
    """Everything wrong with the ``X402`` setting (empty when it is usable)."""
    conf = raw_setting() if conf is None else conf
    if not isinstance(conf, Mapping):
        return [
            Problem(
                E_SETTING,
                "the X402 setting is missing or not a dict",
                "Add X402 = {'ROUTES': {'GET /api/weather': '$0.001'}, 'PAY_TO': '0x...', "
                "'FACILITATOR_URL': 'https://x402.org/facilitator'} to your settings.",
            )
        ]
    found = [
        Problem(E_UNKNOWN_KEY, f"X402 has an unknown key {key!r}", f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.")
        for key in conf
        if key not in KNOWN_KEYS
    ]
    pay_to = conf.get("PAY_TO")
    if pay_to is not None:
        try:
            check_address(pay_to, "X402['PAY_TO']")
        except ConfigurationError as exc:
            found.append(Problem(E_PAY_TO, str(exc), "Use the 0x address that receives the USDC."))
            pay_to = None
    network = conf.get("NETWORK", "eip155:8453")
    networks = [network] if isinstance(network, str) else network
    try:
        if not isinstance(networks, (list, tuple)) or not networks:
            raise ConfigurationError(f"X402['NETWORK'] must be a network id or a non-empty list, got {network!r}")
        for net in networks:
            get_network(net)
    except ConfigurationError as exc:
        found.append(
            Problem(
                E_NETWORK,
                str(exc),
                "Use e.g. 'eip155:8453' (Base) or 'eip155:84532' (Base Sepolia), or register_network() your own first.",
            )
        )
        network = "eip155:8453"
    found += _option_problems(conf)
    if not any(p.id in (E_PAY_TO, E_NETWORK, E_OPTION) for p in found):
        try:
            _gate(conf, pay_to, network)
        except ConfigurationError as exc:
            found.append(
                Problem(
                    E_ROUTES,
                    f"X402['ROUTES']: {exc}",
                    "ROUTES maps 'METHOD /path' patterns to a price ('$0.001'), a policy or a RouteConfig.",
                )
            )
    found += _facilitators(conf)[2]
    store = conf.get("STORE")
    if store is not None:
        try:
            obj = _load(store)
        except (ImportError, TypeError, ValueError) as exc:
            found.append(Problem(E_STORE, f"X402['STORE'] cannot be loaded: {exc}", "Give an object or a dotted path."))
        else:
            if not (callable(getattr(obj, "reserve", None)) or callable(getattr(obj, "reserve_sync", None))):
                found.append(
                    Problem(
                        E_STORE,
                        f"X402['STORE'] is not a payment store: {type(obj).__name__}",
                        "Implement PaymentStore (async) and/or SyncPaymentStore (blocking).",
                    )
                )
    return found


def _option_problems(conf: Mapping[str, Any]) -> list[Problem]:
    found = []
    for key in ("MAX_TIMEOUT_SECONDS", "MAX_PRICING_BODY"):
        value = conf.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            found.append(Problem(E_OPTION, f"X402['{key}'] must be a positive int, got {value!r}", "For example 300."))
    url = conf.get("RESOURCE_URL")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        found.append(
            Problem(
                E_OPTION,
                f"X402['RESOURCE_URL'] must be an http(s) URL, got {url!r}",
                "It is the public base URL of this site, e.g. 'https://api.example.com'.",
            )
        )
    if conf.get("CHECK_FUNDS") is not None and not isinstance(conf.get("CHECK_FUNDS"), bool):
        found.append(
            Problem(
                E_OPTION, f"X402['CHECK_FUNDS'] must be True or False, got {conf['CHECK_FUNDS']!r}", "Default False."
            )
        )
    settle_when = conf.get("SETTLE_WHEN")
    if settle_when is not None:
        try:
            ok = callable(import_string(settle_when) if isinstance(settle_when, str) else settle_when)
        except ImportError:
            ok = False
        if not ok:
            found.append(
                Problem(
                    E_OPTION,
                    f"X402['SETTLE_WHEN'] must be a callable status -> bool, got {settle_when!r}",
                    "The default settles only 2xx responses.",
                )
            )
    return found


def _gate(conf: Mapping[str, Any], pay_to: Any, network: Any) -> Gate:
    return Gate(
        routes=conf.get("ROUTES") or {},
        pay_to=pay_to,
        network=network,
        max_timeout_seconds=conf.get("MAX_TIMEOUT_SECONDS") or 300,
        resource_url=conf.get("RESOURCE_URL"),
        check_funds=conf.get("CHECK_FUNDS") is True,
    )


def build(*, async_mode: bool) -> PaymentConfig:
    """The middleware's configuration for one mode; :class:`ImproperlyConfigured` lists every problem."""
    conf = raw_setting()
    found = problems(conf)
    if found:
        raise ImproperlyConfigured("; ".join(f"{p.id}: {p.message}" for p in found))
    async_fac, sync_fac, _ = _facilitators(conf)
    facilitator = async_fac if async_mode else sync_fac
    if facilitator is None and conf.get("FACILITATOR_URL"):
        from ..facilitator import HTTPFacilitator, SyncHTTPFacilitator

        facilitator = (HTTPFacilitator if async_mode else SyncHTTPFacilitator)(conf["FACILITATOR_URL"])
    if facilitator is None:
        mode, key = ("ASGI (async)", "FACILITATOR") if async_mode else ("WSGI (sync)", "SYNC_FACILITATOR")
        raise ImproperlyConfigured(
            f"Django runs the x402 middleware under {mode}; set X402['{key}'] or X402['FACILITATOR_URL']"
        )
    store = _load(conf["STORE"]) if conf.get("STORE") is not None else None
    settle_when = conf.get("SETTLE_WHEN") or settle_on_2xx
    try:
        return build_config(
            routes=conf.get("ROUTES") or {},
            facilitator=facilitator,
            blocking=not async_mode,
            pay_to=conf.get("PAY_TO"),
            network=conf.get("NETWORK", "eip155:8453"),
            store=store,
            max_timeout_seconds=conf.get("MAX_TIMEOUT_SECONDS") or 300,
            resource_url=conf.get("RESOURCE_URL"),
            settle_when=import_string(settle_when) if isinstance(settle_when, str) else settle_when,
            max_pricing_body=conf.get("MAX_PRICING_BODY") or MAX_PRICING_BODY,
            check_funds=conf.get("CHECK_FUNDS") is True,
            listeners=[import_string(v) if isinstance(v, str) else v for v in conf.get("LISTENERS") or ()],
            journal=_load(conf["JOURNAL"]) if conf.get("JOURNAL") is not None else None,
        )
    except ConfigurationError as exc:
        mode = "ASGI" if async_mode else "WSGI"
        raise ImproperlyConfigured(f"X402 under {mode}: {exc}") from None
