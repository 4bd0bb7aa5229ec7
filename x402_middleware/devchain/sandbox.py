"""``python -m x402_middleware.devchain.sandbox``: x402 offline, in one command (no keys, no testnet, no faucet).

Starts a dev chain (anvil with a test USDC at Base Sepolia's USDC address and a funded payer) and the self-hosted
facilitator that settles on it, then prints what to paste. Progress goes to stderr, with a summary ending in one
``export`` line; stdout gets exactly one JSON line (``facilitator_url``, ``network``, ``pay_to``,
``payer_private_key``, ``payer_address``, ``rpc_url``, ``asset``)::

    $ python -m x402_middleware.devchain.sandbox
    export X402_FACILITATOR_URL=http://127.0.0.1:4402 X402_NETWORK=eip155:84532 X402_PAY_TO=0x… X402_PAYER_KEY=0x…

Paste that line where you start ``uvicorn examples.starlette_app:app`` (it reads the first three) and where you pay
with ``X402Auth(os.environ["X402_PAYER_KEY"])``. Ctrl+C (or SIGTERM) stops the facilitator and anvil; anvil also
dies with this process if it is killed. The keys are publicly known dev keys: never use them on a real chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from types import FrameType

from ..facilitator.onchain import OnChainFacilitator
from ..facilitator.server import facilitator_app
from ._anvil import AnvilNotFoundError, AnvilStartError
from .chain import DEV_BLOCK_TIME, DevChain

#: The chains the sandbox can emulate: networks whose built-in USDC the dev chain's token stands in for, so that
#: an app and a client in other processes need nothing but the network name.
NETWORKS = ("base-sepolia", "base")


def _log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m x402_middleware.devchain.sandbox",
        description="Start a dev chain and a facilitator settling on it; print what to paste; run until Ctrl+C.",
    )
    parser.add_argument(
        "--network", choices=NETWORKS, default="base-sepolia", help="chain to emulate (default: base-sepolia)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="facilitator address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4402, help="facilitator port (default: 4402; 0 = any free one)")
    parser.add_argument(
        "--anvil", default=None, help="path to the anvil binary (default: $X402_ANVIL, node_modules, PATH)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stopping: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    # Installed before anvil starts so that an early Ctrl+C still shuts it down. While the facilitator serves,
    # uvicorn handles the signals itself, then hands them back here.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per JSON-RPC call otherwise

    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        _log(f"cannot listen on {args.host}:{args.port}: {exc} (choose another --port, or 0 for any free one)")
        return 2
    chain = DevChain(args.network, payers=1, facilitators=1, block_time=DEV_BLOCK_TIME)
    _log(f"starting anvil for {chain.network} ({args.network})")
    try:
        chain.start()  # from the main thread: anvil gets SIGTERM if this process dies
    except (AnvilNotFoundError, AnvilStartError) as exc:
        _log(str(exc))
        return 2
    try:
        return _serve(args, chain, sock, stopping)
    finally:
        chain.stop()
        sock.close()
        _log("stopped")


def _serve(args: argparse.Namespace, chain: DevChain, sock: socket.socket, stopping: list[int]) -> int:
    import uvicorn

    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys, network=chain.network, assets=[chain.asset])
    server = uvicorn.Server(uvicorn.Config(facilitator_app(facilitator), log_level="warning", access_log=False))
    info = {
        "facilitator_url": url,
        "network": chain.network,
        "pay_to": chain.pay_to,
        "payer_private_key": chain.payer_keys[0],
        "payer_address": chain.payer_addresses[0],
        "rpc_url": chain.rpc_url,
        "asset": chain.asset,
    }
    exit_code = 0

    async def serve() -> None:
        nonlocal exit_code
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started and not stopping:
            _announce(chain, info)
        while not task.done():
            if stopping:
                server.should_exit = True
            elif not chain.running and not server.should_exit:
                await asyncio.sleep(0.2)  # Ctrl+C in a terminal reaches anvil too: was that it?
                if not (stopping or server.should_exit):
                    _log("anvil exited unexpectedly")
                    exit_code = 1
                    server.should_exit = True
            await asyncio.wait({task}, timeout=0.25)
        await task
        await facilitator.aclose()

    if not stopping:
        asyncio.run(serve())
    return exit_code


def _announce(chain: DevChain, info: dict[str, str]) -> None:
    balance = chain.payer_balance // 10**6
    _log(f"anvil pid {chain.pid}: {chain.network} at {info['rpc_url']}, test USDC at {info['asset']}")
    _log(f"facilitator on {info['facilitator_url']}; the payer {info['payer_address']} holds {balance} test USDC")
    _log("paste this line in the shells that run your app and your client:")
    print(
        f"\nexport X402_FACILITATOR_URL={info['facilitator_url']} X402_NETWORK={info['network']} "
        f"X402_PAY_TO={info['pay_to']} X402_PAYER_KEY={info['payer_private_key']}\n",
        file=sys.stderr,
        flush=True,
    )
    try:  # after the summary: a reader of this line has the whole summary on stderr too
        print(json.dumps(info), flush=True)
    except BrokenPipeError:  # the reader went away; keep serving anyway
        pass
    _log("running; press Ctrl+C to stop the facilitator and the chain")


if __name__ == "__main__":
    sys.exit(main())
