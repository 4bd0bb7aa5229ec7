"""``python -m examples.gateway``: serve the gateway (without payment) on 127.0.0.1.

``--upstream emulator`` (the default) also starts the local upstream emulator in-process and
points every pool at it, so nothing leaves the machine; ``--upstream env`` uses the real
providers whose API keys are set in the environment. Prints one JSON line once listening.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import uvicorn

from .app import create_app
from .config import GatewayConfig, emulator_pools
from .emulator import EmulatorServer, bind_loopback
from .serve import add_trusted_proxy_argument, server_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port chosen by the kernel")
    parser.add_argument("--upstream", choices=("emulator", "env"), default="emulator")
    parser.add_argument("--catalog", help="a catalog.json to use instead of the bundled one")
    add_trusted_proxy_argument(parser)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is ours, not httpx's

    emulator = EmulatorServer().__enter__() if args.upstream == "emulator" else None
    try:
        config = GatewayConfig(**({"catalog": args.catalog} if args.catalog else {}))
        if emulator is not None:
            config = GatewayConfig(
                catalog=config.load_catalog(), pools=emulator_pools(emulator.url, config.load_catalog())
            )
        app = create_app(config)
        sock = bind_loopback(args.port, args.host)
        url = f"http://{args.host}:{sock.getsockname()[1]}"
        print(
            json.dumps(
                {
                    "url": url,
                    "api_url": url + "/api",
                    "upstream": args.upstream,
                    "emulator_url": emulator.url if emulator else None,
                    "models": len(app.state.gateway.available_models()),
                }
            ),
            flush=True,
        )
        server = uvicorn.Server(server_config(app, trusted_proxies=args.trusted_proxy))
        server.run(sockets=[sock])
    finally:
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    main()
