"""``python -m examples.gateway.dev`` (``make dev``): the paid gateway on its embedded defaults, fully offline.

Starts, in order, and stops in reverse on Ctrl+C / SIGTERM:

1. a local EVM (anvil from npm) emulating **Base** (chain id 8453) with the test USDC at Base's canonical
   USDC address, so unmodified clients (official x402 SDK, BlockRun SDKs) sign for it; and, with the ``svm``
   extra installed (``make install`` has it), a local **Solana** (LiteSVM in process, JSON-RPC on 127.0.0.1)
   with a USDC-like mint at Solana mainnet's USDC address (``--no-solana`` leaves it out);
2. the self-hosted facilitators (:class:`~x402_middleware.facilitator.OnChainFacilitator` and
   :class:`~x402_middleware.facilitator.SolanaFacilitator`, in-process), which settle every payment on its chain;
3. the upstream emulator (OpenAI, Anthropic and Gemini wire formats) -- unless provider API keys are set in
   the environment (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, AWS credentials for Bedrock, ...), then the real
   providers are used;
4. the gateway with x402 payment on ``http://127.0.0.1:8402`` (or a free port if 8402 is taken); with
   ``--billing usage`` its chat calls also offer x402 ``upto`` (the quote as maximum) and a caller paying that way
   is charged the tokens the upstream reports (``"billing"`` in the JSON line says which mode).

Progress goes to stderr; once ready it prints one JSON line to stdout::

    {"url": "http://127.0.0.1:8402", "api_url": "http://127.0.0.1:8402/api", "rpc_url": "http://127.0.0.1:...",
     "network": "eip155:8453", "asset": "0x8335...", "pay_to": "0x...", "payer_private_keys": ["0x..."], ...,
     "solana_rpc_url": "http://127.0.0.1:...", "solana_network": "solana:5eykt4Us...", "mint": "EPjF...",
     "solana_pay_to": "...", "solana_payer_secret_keys": ["<base58>"], ...}

The 402 then offers both: Base first, Solana second (payers choose; ``X402Auth(prefer_networks=["solana"])``).
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
from typing import TYPE_CHECKING, Any

import uvicorn

from x402_middleware.devchain import DevChain
from x402_middleware.devchain.chain import DEV_BLOCK_TIME
from x402_middleware.facilitator import Facilitator, MultiFacilitator, OnChainFacilitator
from x402_middleware.journal import Reconciler, open_journal

from .config import GatewayConfig, emulator_pools
from .emulator import EmulatorServer, bind_loopback
from .paid import create_paid_app
from .pools import resolve_endpoints
from .production import gateway_config, payment_store
from .serve import add_settings_arguments, server_config, settings_from_args
from .settings import Settings, SettingsError, configure_logging

if TYPE_CHECKING:
    from x402_middleware.devchain.solana import SolanaDevChain

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


def start_solana(payers: int) -> tuple[SolanaDevChain, Facilitator] | None:
    """The local Solana (mainnet's USDC mint) and its facilitator, whose fee payer the 402 offers; ``None`` without
    the ``svm`` extra (said so)."""
    try:
        from x402_middleware.devchain.solana import SolanaDevChain
        from x402_middleware.facilitator.solana import SolanaFacilitator
        from x402_middleware.schemes.svm.exact import set_fee_payer
    except ImportError as exc:
        _log(f"no local Solana ({exc}); offering Base only")
        return None
    chain = SolanaDevChain("solana", payers=payers, fee_payers=2).start()
    facilitator = SolanaFacilitator(chain.rpc_url, chain.fee_payer_secret_keys, network=chain.network)
    set_fee_payer(chain.network, facilitator.fee_payer_addresses[0])
    _log(
        f"Solana runtime (LiteSVM) on {chain.rpc_url} for {chain.network}; mint {chain.mint}; {len(chain.payers)} "
        f"payer(s) with {chain.payer_balance // 10**6} USDC each (ready in {chain.timings['ready_ms']:.0f} ms)"
    )
    return chain, facilitator


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
    parser.add_argument(
        "--no-solana", action="store_true", help="offer Base only (no local Solana runtime, no Solana in the 402)"
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
    chain = DevChain(args.chain, payers=args.payers, facilitators=args.signers, block_time=DEV_BLOCK_TIME)
    emulator: EmulatorServer | None = None
    reconciler: Reconciler | None = None
    try:
        _log(f"starting the dev chain ({CHAINS[args.chain]}, anvil from node_modules)")
        chain.start()
        _log(
            f"anvil pid {chain.pid} on {chain.rpc_url}; test USDC at {chain.asset}; "
            f"{len(chain.payer_keys)} payer(s) funded with {chain.payer_balance // 10**6} USDC each"
        )
        chain_facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys, network=chain.network)
        facilitator: Facilitator = chain_facilitator
        networks, pay_to = [chain.network], {"eip155": settings.pay_to or chain.pay_to}
        solana = None if args.no_solana else start_solana(args.payers)
        if solana is not None:
            sol_chain, sol_facilitator = solana
            facilitator = MultiFacilitator(facilitator, sol_facilitator)
            networks.append(sol_chain.network)
            pay_to["solana"] = sol_chain.pay_to
        config, emulator = upstream_config(args.upstream, settings=settings)
        _log(f"upstream: {'emulator at ' + emulator.url if emulator else 'real providers from environment keys'}")
        store = payment_store(settings.redis_url)
        journal = open_journal(args.journal) if args.journal else None
        if journal is not None:
            reconciler = Reconciler(journal, chain.rpc_url, interval=60.0).start()
            _log(f"settlement journal: {args.journal} (reconciled on the dev chain every 60 s)")
        app = create_paid_app(
            config,
            pay_to=pay_to,
            network=networks,
            facilitator=facilitator,
            store=store,
            journal=journal,
            facilitator_address=chain_facilitator.address,  # named by upto requirements: the one that settles them
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
            "pay_to": pay_to["eip155"],
            "payer_private_keys": chain.payer_keys,
            "payer_addresses": chain.payer_addresses,
            "upstream": "emulator" if emulator else "env",
            "emulator_url": emulator.url if emulator else None,
            "models": len(app.state.gateway.available_models()) + len(app.state.gateway.available_media()),
            "journal": args.journal,
            "billing": config.billing,  # exact: the quote; usage: upto, the tokens used (a model's "settle" wins)
        }
        if solana is not None:
            info.update(solana[0].info())
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
        if solana is not None:
            solana[0].stop()
        chain.stop()
        _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
