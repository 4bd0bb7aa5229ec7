"""Run a self-hosted x402 facilitator that settles on an EVM chain.

    python -m x402_middleware.facilitator --rpc-url http://127.0.0.1:8545 --key 0x<gas key> --network eip155:84532

It settles only the network's USDC (or ``--asset``) unless told otherwise: ``--allow-asset 0x<token>``
(repeatable) adds a token, ``--allow-any-asset`` pays gas for any EIP-3009 contract a caller names.

Keys may also come from ``X402_FACILITATOR_KEYS`` (comma-separated; keeps them out of ``ps``), the access
token from ``X402_FACILITATOR_TOKEN``. Prints one JSON line
(``url``, ``network``, ``signers``, ``assets``) once it listens; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys

from .._exceptions import ConfigurationError
from ..networks import Asset, Network, get_network, register_network
from .onchain import OnChainFacilitator
from .server import facilitator_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="x402-facilitator", description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain to settle on")
    parser.add_argument("--key", action="append", default=[], help="gas-paying private key (repeat for a pool)")
    parser.add_argument("--network", default="eip155:84532", help="CAIP-2 network id (default eip155:84532)")
    parser.add_argument("--asset", help="token address, when not the network's default USDC")
    parser.add_argument("--asset-name", help="the token's EIP-712 name (with --asset)")
    parser.add_argument("--asset-version", default="2", help="the token's EIP-712 version (with --asset)")
    parser.add_argument("--asset-decimals", type=int, default=6)
    parser.add_argument(
        "--allow-asset",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also settle payments in this token (repeatable; default: only the network's asset)",
    )
    parser.add_argument(
        "--allow-any-asset",
        action="store_true",
        help="settle payments in any token contract a caller names (pays gas for anyone's contract)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("X402_FACILITATOR_TOKEN"),
        help="require Authorization: Bearer <token> (default: $X402_FACILITATOR_TOKEN; none = open)",
    )
    parser.add_argument(
        "--pay-to",
        action="append",
        default=None,
        help="only settle payments to this address (repeatable; default: any)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("X402_REDIS_URL"),
        help="lease the --key signers on this Redis, so that several facilitator processes sharing a key pool "
        "never send from the same key (default: X402_REDIS_URL; none: keys are not coordinated)",
    )
    parser.add_argument("--lease-keys", type=int, help="with --redis-url: lease at most this many of the keys")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4402, help="0 lets the kernel choose")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    keys = args.key or [k for k in os.environ.get("X402_FACILITATOR_KEYS", "").split(",") if k]
    lost: list[str] = []  # signer leases lost while serving: the process stops (its supervisor restarts it)
    if not keys:
        parser.error("give at least one --key (or X402_FACILITATOR_KEYS): the facilitator pays gas from it")
    try:
        network = get_network(args.network)
        if args.asset:
            if not args.asset_name:
                parser.error("--asset needs --asset-name (the token's EIP-712 name)")
            network = register_network(
                Network(
                    network.caip2,
                    network.chain_id,
                    Asset(args.asset, args.asset_name, args.asset_version, args.asset_decimals),
                    network.v1_name,
                    network.testnet,
                )
            )
        default_asset = [network.asset.address] if network.asset is not None else []
        leases = None
        if args.redis_url:
            from .leases import RedisSignerLeases

            assert network.chain_id is not None
            leases = RedisSignerLeases.from_url(args.redis_url, chain_id=network.chain_id, on_lost=lost.append)
            keys = leases.acquire(keys, limit=args.lease_keys)
        else:
            logging.getLogger("x402_middleware.facilitator").warning(
                "x402: signer keys are not coordinated with other facilitator processes: give each process its own "
                "--key set, or pass --redis-url to lease keys from a shared pool"
            )
        facilitator = OnChainFacilitator(
            args.rpc_url,
            keys,
            network=network,
            assets=default_asset + args.allow_asset,
            any_asset=args.allow_any_asset,
        )
    except ConfigurationError as exc:
        parser.error(str(exc))
    try:
        import uvicorn
    except ImportError:
        print('the facilitator server needs uvicorn: pip install "x402_middleware[server]"', file=sys.stderr)
        return 2

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    if args.token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            "warning: an open facilitator pays gas for anyone's payments; set --token and/or --pay-to",
            file=sys.stderr,
            flush=True,
        )
    app = facilitator_app(facilitator, bearer_token=args.token, pay_to=args.pay_to)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(
                json.dumps(
                    {
                        "url": url,
                        "network": network.caip2,
                        "signers": [s.address for s in facilitator.signers],
                        "assets": "any" if facilitator.any_asset else sorted(facilitator.assets),
                    }
                ),
                flush=True,
            )
            print(f"x402 facilitator listening on {url}", file=sys.stderr, flush=True)
        while not task.done():
            if lost:
                print(f"x402 facilitator: signer lease lost ({', '.join(lost)}); stopping", file=sys.stderr, flush=True)
                server.should_exit = True
                break
            await asyncio.sleep(0.2)
        await task
        await facilitator.aclose()
        if leases is not None:
            leases.release()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
