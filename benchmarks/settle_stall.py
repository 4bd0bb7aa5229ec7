"""Settlement stalls under load: bursts of concurrent settlements on anvil, optionally losing one transaction.

The gateway benchmark's rare 30 s stall (p99 = ``receipt_timeout``, throughput down to one round per 30 s)
is what a lost settlement transaction does: the node acknowledged it and never mined it, so its signer's
later transactions queue behind the nonce gap and every settlement on that key waits the whole
``receipt_timeout``. ``--lose-every N`` reproduces that on purpose: in every N-th burst one
``eth_sendRawTransaction`` answers with the transaction's hash without reaching anvil (a node that drops a
transaction from its pool, or an unanswered send). Everything else is real: anvil, signers, receipts.

    .venv/bin/python benchmarks/settle_stall.py                           # 40 bursts of 16, every 10th loses a tx
    .venv/bin/python benchmarks/settle_stall.py --lose-every 0 --bursts 200   # just load: look for natural stalls

Bounded: at most ``--bursts`` bursts and ``--seconds`` of wall time; loopback only. Prints one line per
stalled burst and a summary (p50/p99/max settle latency, settlements/s, stalls over 1 s, on-chain check).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile
from settlement import PRICE, presign

from x402_middleware.devchain import DevChain
from x402_middleware.evm.eip3009 import keccak
from x402_middleware.facilitator.onchain import OnChainFacilitator
from x402_middleware.models import PaymentRequirements
from x402_middleware.networks import get_network


class _LosingRPC:
    """Wraps the facilitator's RPC: when ``armed``, the next transaction is acknowledged and never sent."""

    def __init__(self, rpc: Any) -> None:
        self.rpc = rpc
        self.armed = False
        self.lost: list[str] = []

    async def __call__(self, method: str, *params: Any) -> Any:
        if method == "eth_sendRawTransaction" and self.armed:
            self.armed = False
            tx_hash = "0x" + keccak(bytes.fromhex(params[0][2:])).hex()
            self.lost.append(tx_hash)
            return tx_hash
        return await self.rpc(method, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rpc, name)


async def run(args: argparse.Namespace) -> int:
    with DevChain("base", payers=1, facilitators=args.signers) as chain:
        network = get_network(chain.network)
        assert network.asset is not None
        requirements = PaymentRequirements(network, network.asset, PRICE, chain.pay_to, 300)
        facilitator = OnChainFacilitator(
            chain.rpc_url, chain.facilitator_keys, network=network, receipt_timeout=args.receipt_timeout
        )
        rpc = _LosingRPC(facilitator.rpc)
        facilitator.rpc = rpc  # type: ignore[assignment]
        latencies: list[float] = []
        failures: list[str] = []
        stalled = 0
        before = chain.balance_of(chain.pay_to)
        t_start = time.monotonic()
        bursts = 0
        for burst in range(args.bursts):
            if time.monotonic() - t_start > args.seconds:
                break
            bursts += 1
            payloads = presign(chain, requirements, args.size)
            rpc.armed = bool(args.lose_every) and burst % args.lose_every == args.lose_every - 1

            async def one(payload: Any) -> tuple[float, Any]:
                t0 = time.perf_counter()
                result = await facilitator.settle(payload, requirements)
                return time.perf_counter() - t0, result

            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(p) for p in payloads))
            wall = time.perf_counter() - t0
            for seconds, result in results:
                latencies.append(seconds * 1000)
                stalled += seconds > 1.0
                if not result.success:
                    failures.append(f"{result.error_reason} {result.transaction}")
            if wall > 1.0:
                slow = sum(s > 1.0 for s, _ in results)
                print(f"burst {burst}: {wall:.1f} s, {slow}/{len(results)} settlements over 1 s", flush=True)
        seconds = time.monotonic() - t_start
        # Left-over pending settlements (the old behaviour) get mined once the gap is filled; give them a moment.
        await asyncio.sleep(0.5)
        received = chain.balance_of(chain.pay_to) - before
        await facilitator.aclose()
    latencies.sort()
    ok = [f for f in failures if not f.startswith("settlement_pending")]
    print(
        f"{len(latencies)} settlements in {bursts} bursts of {args.size} ({args.signers} signers, receipt_timeout "
        f"{args.receipt_timeout} s, {len(rpc.lost)} lost transactions): p50 {percentile(latencies, 50):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms, max {latencies[-1]:.1f} ms, {len(latencies) / seconds:.0f}/s, "
        f"{stalled} over 1 s, {len(failures)} not successful ({len(ok)} other than settlement_pending); "
        f"pay_to received {received} of {PRICE * len(latencies)}"
    )
    return 0 if not failures and stalled == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--size", type=int, default=16, help="settlements per burst, all at once")
    parser.add_argument("--signers", type=int, default=4)
    parser.add_argument("--lose-every", type=int, default=10, help="lose one transaction every N bursts (0: never)")
    parser.add_argument("--receipt-timeout", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=150.0, help="stop starting bursts after this long")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
