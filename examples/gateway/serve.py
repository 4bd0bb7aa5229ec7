"""How the gateway's commands run uvicorn: proxy headers only from proxies the operator named.

uvicorn's defaults (``proxy_headers=True``, ``forwarded_allow_ips="127.0.0.1"``) rewrite the client address
from ``X-Forwarded-For`` for any request that comes from 127.0.0.1, below the gateway's own
``trusted_proxies``: a client on the same host (or a proxy there that passes the header through)
would then pick its own IP, slipping past the per-IP rate limits and forging the logged client. So the
gateway's commands turn proxy headers off unless trusted proxies are given::

    server = uvicorn.Server(server_config(app))                                # the peer address, always
    server = uvicorn.Server(server_config(app, trusted_proxies=["10.0.0.5"]))  # X-Forwarded-For from 10.0.0.5

With ``uvicorn examples.gateway...:app`` run by hand, pass ``--no-proxy-headers`` (or
``--forwarded-allow-ips <your proxy>``) for the same effect.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp

from .settings import Settings, load_settings


def server_config(app: ASGIApp, *, trusted_proxies: Sequence[str] = (), log_level: str = "warning") -> uvicorn.Config:
    """A uvicorn config for the gateway: no access log (the gateway logs each request), proxy headers only from
    ``trusted_proxies`` (IPs or CIDRs, as uvicorn's ``forwarded_allow_ips``)."""
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=",".join(trusted_proxies) if trusted_proxies else None,
    )


def add_trusted_proxy_argument(parser: argparse.ArgumentParser) -> None:
    """``--trusted-proxy IP`` (repeatable) for the commands that serve the gateway; read it as ``args.trusted_proxy``."""
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="IP",
        help="a reverse proxy (IP or CIDR) whose X-Forwarded-For is believed (repeatable); none by default",
    )


def add_settings_arguments(parser: argparse.ArgumentParser, *, payment: bool) -> None:
    """The flags of :mod:`.settings` options (each overrides the config file and the environment)."""
    parser.add_argument("--config", metavar="PATH", help="a TOML settings file (default: $GATEWAY_CONFIG, if set)")
    parser.add_argument("--print-config", action="store_true", help="print the effective settings (secrets masked)")
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (0 = a free port chosen by the kernel)")
    parser.add_argument("--catalog", help="a catalog.json to use instead of the bundled one")
    add_trusted_proxy_argument(parser)
    parser.add_argument("--log-level", default=None, help="debug, info (default), warning or error")
    parser.add_argument("--log-format", choices=("json", "text"), default=None, help="default json")
    parser.add_argument("--pay-to", default=None, help="the address paid calls pay")
    parser.add_argument(
        "--redis-url", default=None, help="share payments between replicas in this Redis (redis://host:6379/0)"
    )
    parser.add_argument(
        "--billing",
        choices=("exact", "usage"),
        default=None,
        help="exact: a paid call pays its quote (default); usage: the 402 also offers x402 upto with the quote as "
        "maximum and the call pays the tokens the upstream reports (a model's catalog 'settle' overrides it)",
    )
    if payment:
        parser.add_argument("--network", action="append", default=[], help="an accepted network (repeatable)")
        parser.add_argument("--facilitator-url", default=None, help="a remote x402 facilitator")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """:func:`~.settings.load_settings` with the flags that were given."""
    flags = {
        "host": args.host,
        "port": args.port,
        "catalog": args.catalog,
        "trusted_proxies": args.trusted_proxy,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "pay_to": args.pay_to,
        "redis_url": args.redis_url,
        "billing": args.billing,
        "networks": getattr(args, "network", None),
        "facilitator_url": getattr(args, "facilitator_url", None),
    }
    return load_settings(args.config, flags=flags)
