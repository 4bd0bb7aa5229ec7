"""``python -m examples.gateway.dev`` (``make dev``): the paid gateway on its embedded defaults, fully offline.

Starts, in order, and stops in reverse on Ctrl+C / SIGTERM:

1. a local EVM (anvil from npm) emulating **Base** (chain id 8453) with the test USDC at Base's canonical
   USDC address, so unmodified clients (official x402 SDK, BlockRun SDKs) sign for it;
2. the self-hosted facilitator (:class:`~x402_middleware.facilitator.OnChainFacilitator`, in-process), which
   settles every payment on that chain;
3. the upstream emulator (OpenAI, Anthropic and Gemini wire formats) -- unless provider API keys are set in
   the environment (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...), then the real providers are used;
4. the gateway with x402 payment on ``http://127.0.0.1:8402`` (or a free port if 8402 is taken).

Progress goes to stderr; once ready it prints one JSON line to stdout::

    {"url": "http://127.0.0.1:8402", "api_url": "http://127.0.0.1:8402/api", "rpc_url": "http://127.0.0.1:...",
     "network": "eip155:8453", "asset": "0x8335...", "pay_to": "0x...", "payer_private_keys": ["0x..."], ...}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from types import FrameType
from typing import Any

import uvicorn

from x402_middleware.devchain import DevChain
from x402_middleware.facilitator import OnChainFacilitator
from x402_middleware.journal import Reconciler, open_journal

from .config import GatewayConfig, emulator_pools
from .emulator import EmulatorServer, bind_loopback
from .paid import create_paid_app
from .pools import resolve_endpoints
from .production import gateway_config, payment_store
from .serve import add_settings_arguments, server_config, settings_from_args
from .settings import Settings, SettingsError, configure_logging

DEFAULT_PORT = 8402
CHAINS = {"base": "eip155:8453", "base-sepolia": "eip155:84532"}
logger = logging.getLogger(__name__)


def _log(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def _bind(host: str, port: int, *, strict: bool) -> socket.socket:
    """Bind ``port``; when it is taken and the port was not asked for explicitly, let the kernel choose one."""
    try:
        return bind_loopback(port, host)
    except OSError as exc:
        if strict or port == 0:
            raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}; pass --port 0 for a free port") from None
        _log(f"port {port} is taken ({exc.strerror}); using a free port instead")
        return bind_loopback(0, host)


def upstream_config(
    mode: str, env: Mapping[str, str] | None = None, *, settings: Settings | None = None
) -> tuple[GatewayConfig, EmulatorServer | None]:
    """The gateway config for ``mode`` (``auto``, ``emulator`` or ``env``) and the emulator it started, if any.

    ``auto`` uses the real providers when at least one model has an upstream whose API key is set, else the emulator.
    ``settings`` give the catalog, rate limits and trusted proxies.
    """
    settings = settings if settings is not None else Settings()
    real = replace(gateway_config(settings), env=env)
    catalog = real.load_catalog()
    keyed = any(
        resolve_endpoints(family, specs, os.environ if env is None else env) for family, specs in catalog.pools.items()
    )
    if mode == "env" or (mode == "auto" and keyed):
        return real, None
    emulator = EmulatorServer().__enter__()
    return replace(real, catalog=catalog, pools=emulator_pools(emulator.url, catalog)), emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.gateway.dev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--chain",
        choices=sorted(CHAINS),
        default="base",
        help="which network the dev chain emulates (default: base, eip155:8453)",
    )
    parser.add_argument(
        "--upstream",
        choices=("auto", "emulator", "env"),
        default="auto",
        help="auto: real providers if API keys are set in the environment, else the emulator",
    )
    parser.add_argument("--payers", type=int, default=3, help="funded payer wallets (1,000 USDC each)")
    parser.add_argument("--signers", type=int, default=4, help="facilitator signer keys (parallel settlements)")
    parser.add_argument(
        "--journal",
        default=None,
        help="record every payment in this settlement journal (a SQLite file, or a postgresql:// URL shared by "
        "replicas), reconciled on the dev chain every minute; a settled call whose response was lost is then "
        "served again without a second charge (default: no journal)",
    )
    # The settings file and environment apply too (catalog, pay_to, rate limits, trusted proxies, logging, Redis);
    # the network and the facilitator are always the dev chain's.
    add_settings_arguments(parser, payment=False)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"python -m examples.gateway.dev: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(settings.masked(), indent=2))
        return 0
    configure_logging(settings)
    port = args.port if args.port is not None else (settings.port if settings.sources["port"] != "default" else None)

    serving = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn runs, stop by unwinding (so the chain and emulator are cleaned up below). While it
        # runs it owns SIGINT/SIGTERM; afterwards it re-raises the signal to the previous handler (this one),
        # which must then do nothing so that the clean-up still runs and the exit code is 0.
        if not serving:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sock = _bind(settings.host, DEFAULT_PORT if port is None else port, strict=port is not None)
    started = time.perf_counter()
    chain = DevChain(args.chain, payers=args.payers, facilitators=args.signers)
    emulator: EmulatorServer | None = None
    reconciler: Reconciler | None = None
    try:
        _log(f"starting the dev chain ({CHAINS[args.chain]}, anvil from node_modules)")
        chain.start()
        _log(
            f"anvil pid {chain.pid} on {chain.rpc_url}; test USDC at {chain.asset}; "
            f"{len(chain.payer_keys)} payer(s) funded with {chain.payer_balance // 10**6} USDC each"
        )
        facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys, network=chain.network)
        config, emulator = upstream_config(args.upstream, settings=settings)
        _log(f"upstream: {'emulator at ' + emulator.url if emulator else 'real providers from environment keys'}")
        store = payment_store(settings.redis_url)
        journal = open_journal(args.journal) if args.journal else None
        if journal is not None:
            reconciler = Reconciler(journal, chain.rpc_url, interval=60.0).start()
            _log(f"settlement journal: {args.journal} (reconciled on the dev chain every 60 s)")
        pay_to = settings.pay_to or chain.pay_to
        app = create_paid_app(
            config, pay_to=pay_to, network=chain.network, facilitator=facilitator, store=store, journal=journal
        )
        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        info: dict[str, Any] = {
            "url": url,
            "api_url": url + "/api",
            "rpc_url": chain.rpc_url,
            "chain_id": chain.chain_id,
            "chain_pid": chain.pid,
            "network": chain.network,
            "asset": chain.asset,
            "pay_to": pay_to,
            "payer_private_keys": chain.payer_keys,
            "payer_addresses": chain.payer_addresses,
            "upstream": "emulator" if emulator else "env",
            "emulator_url": emulator.url if emulator else None,
            "models": len(app.state.gateway.available_models()) + len(app.state.gateway.available_media()),
            "journal": args.journal,
        }
        server = uvicorn.Server(server_config(app, trusted_proxies=settings.trusted_proxies))
        _log(f"gateway on {url} (ready in {time.perf_counter() - started:.1f} s); Ctrl+C or SIGTERM stops everything")
        print(json.dumps(info), flush=True)
        serving = True
        server.run(sockets=[sock])  # handles SIGINT/SIGTERM itself: finishes in-flight requests, then returns
    except KeyboardInterrupt:
        _log("interrupted during start-up")
    finally:
        sock.close()
        if reconciler is not None:
            reconciler.stop()
            reconciler.journal.close()
        if emulator is not None:
            emulator.stop()
        chain.stop()
        _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
