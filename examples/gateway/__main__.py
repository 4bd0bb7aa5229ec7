"""``python -m examples.gateway``: serve the gateway, configured by an optional TOML file, the environment and flags.

``--upstream emulator`` (the default) also starts the local upstream emulator in-process and points every pool at
it, so nothing leaves the machine; ``--upstream env`` uses the real providers whose API keys are set in the
environment. With ``pay_to`` and a facilitator configured (``settings.py``) every paid call needs an x402
payment; without them it serves free. ``--print-config`` prints the effective settings (secrets masked) and
exits. Prints one JSON line once listening.
"""

from __future__ import annotations

import argparse
import json
import sys

import uvicorn

from .config import emulator_pools
from .emulator import EmulatorServer, bind_loopback
from .production import build_app, gateway_config
from .serve import add_settings_arguments, server_config, settings_from_args
from .settings import SettingsError, configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", choices=("emulator", "env"), default="emulator")
    add_settings_arguments(parser, payment=True)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"python -m examples.gateway: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(settings.masked(), indent=2))
        return 0
    configure_logging(settings)

    emulator = EmulatorServer().__enter__() if args.upstream == "emulator" else None
    try:
        config = gateway_config(settings)
        if emulator is not None:
            catalog = config.load_catalog()
            config = gateway_config(settings, pools=emulator_pools(emulator.url, catalog))
        app = build_app(settings, config)
        sock = bind_loopback(settings.port, settings.host)
        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        print(
            json.dumps(
                {
                    "url": url,
                    "api_url": url + "/api",
                    "upstream": args.upstream,
                    "emulator_url": emulator.url if emulator else None,
                    "models": len(app.state.gateway.available_models()) + len(app.state.gateway.available_media()),
                    "paid": settings.paid,
                }
            ),
            flush=True,
        )
        server = uvicorn.Server(server_config(app, trusted_proxies=settings.trusted_proxies))
        server.run(sockets=[sock])
    finally:
        if emulator is not None:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
