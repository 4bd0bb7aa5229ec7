"""How the gateway's commands run uvicorn: proxy headers only from proxies the operator named.

uvicorn's defaults (``proxy_headers=True``, ``forwarded_allow_ips="127.0.0.1"``) rewrite the client address
from ``X-Forwarded-For`` for any request that comes from 127.0.0.1, below the gateway's own
``trust_forwarded_for=False``: a client on the same host (or a proxy there that passes the header through)
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
        help="a reverse proxy whose X-Forwarded-For is believed (repeatable); none by default",
    )
