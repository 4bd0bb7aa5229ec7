"""``python -m x402_middleware.devchain``: run a dev chain until SIGINT/SIGTERM.

Prints exactly one JSON line to stdout once everything is set up (progress goes to stderr)::

    $ python -m x402_middleware.devchain --network base-sepolia --payers 2
    {"rpc_url": "http://127.0.0.1:41231", "chain_id": 84532, "network": "eip155:84532", "asset": "0x036C…",
     "token_name": "USDC", "token_version": "2", "payer_private_keys": [...], "payer_addresses": [...],
     "facilitator_private_keys": [...], "pay_to": "0x…"}

``--solana`` starts the Solana side alone instead (LiteSVM behind JSON-RPC, no anvil; needs the ``svm`` extra)::

    $ python -m x402_middleware.devchain --solana
    {"solana_rpc_url": "http://127.0.0.1:40121", "solana_network": "solana:5eykt4Us…", "mint": "EPjF…",
     "solana_payer_secret_keys": [...], "solana_fee_payer_secret_keys": [...], "solana_pay_to": "…", ...}
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from ._anvil import AnvilNotFoundError, AnvilStartError
from .chain import DEV_BLOCK_TIME, TARGETS, DevChain


def _log(message: str) -> None:
    print(f"devchain: {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m x402_middleware.devchain",
        description="Start anvil with a test USDC at the network's canonical address and funded wallets; "
        "print one JSON line describing it; run until SIGINT/SIGTERM.",
    )
    parser.add_argument(
        "--network", choices=sorted(TARGETS), default="local", help="chain to emulate (default: local = chain 31337)"
    )
    parser.add_argument("--payers", type=int, default=3, help="payer wallets funded with USDC (default: 3)")
    parser.add_argument(
        "--facilitators", type=int, default=1, help="facilitator signer keys funded with ETH (default: 1)"
    )
    parser.add_argument(
        "--payer-balance",
        type=int,
        default=1_000 * 10**6,
        help="USDC per payer in atomic units, 6 decimals (default: 1000000000 = 1,000 USDC)",
    )
    parser.add_argument(
        "--anvil", default=None, help="path to the anvil binary (default: $X402_ANVIL, node_modules, PATH)"
    )
    parser.add_argument(
        "--solana",
        nargs="?",
        const="solana",
        choices=("solana", "solana-devnet"),
        default=None,
        help="start the Solana dev chain (LiteSVM + JSON-RPC) alone instead: mainnet's USDC mint (default) "
        "or solana-devnet's; --payers and --facilitators (fee payers) apply",
    )
    return parser


def _run_solana(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        from .solana import SolanaDevChain
    except ImportError as exc:
        _log(str(exc))
        return 2
    chain = SolanaDevChain(
        args.solana, payers=args.payers, fee_payers=args.facilitators, payer_balance=args.payer_balance
    ).start()
    try:
        _log(
            f"Solana runtime (LiteSVM) for {chain.network} on {chain.rpc_url}: mint {chain.mint}, "
            f"{len(chain.payers)} payer(s), {len(chain.fee_payers)} fee payer(s) (ready in {chain.timings['ready_ms']:.0f} ms)"
        )
        try:
            print(json.dumps(chain.info()), flush=True)
        except BrokenPipeError:
            pass
        _log("running; press Ctrl+C (or send SIGTERM) to stop")
        stop.wait()
    finally:
        chain.stop()
    _log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before starting anvil so an early SIGTERM still shuts it down cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if args.solana is not None:
        return _run_solana(args, stop)

    try:
        chain = DevChain(
            args.network,
            payers=args.payers,
            facilitators=args.facilitators,
            payer_balance=args.payer_balance,
            anvil=args.anvil,
            block_time=DEV_BLOCK_TIME,
        )
    except ValueError as exc:
        _log(str(exc))
        return 2
    _log(f"starting anvil for {chain.network} ({args.network})")
    try:
        chain.start()
    except (AnvilNotFoundError, AnvilStartError) as exc:
        _log(str(exc))
        return 2
    try:
        _log(f"anvil pid {chain.pid} listening on {chain.rpc_url} (ready in {chain.timings['anvil_ready_ms']:.0f} ms)")
        _log(
            f"token {chain.token_name!r} v{chain.token_version} at {chain.asset}; "
            f"{len(chain.payer_keys)} payer(s) with {args.payer_balance} atomic USDC each, "
            f"{len(chain.facilitator_keys)} facilitator key(s) with ETH (setup {chain.timings['setup_ms']:.0f} ms)"
        )
        try:
            print(json.dumps(chain.info()), flush=True)
        except BrokenPipeError:  # the reader went away; keep serving the chain anyway
            pass
        _log("running; press Ctrl+C (or send SIGTERM) to stop")
        while not stop.wait(0.5):
            if not chain.running:
                _log("anvil exited unexpectedly")
                return 1
    finally:
        chain.stop()
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
