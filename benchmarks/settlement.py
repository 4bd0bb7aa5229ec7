"""Settlement throughput and latency of ``OnChainFacilitator`` against a real anvil, and (with the ``svm`` extra) of
``SolanaFacilitator`` against the LiteSVM Solana dev chain.

For each signer-pool size, pre-signs ``--total`` distinct EIP-3009 authorizations from several payers,
settles them through one :class:`~x402_middleware.facilitator.onchain.OnChainFacilitator` with at most
``--concurrency`` settlements in flight, and reports settlements/s and settle latency (p50/p95/p99).
Afterwards every transaction is checked on chain: receipt status 1, sent from a pool key, the payer's
nonce marked used, and every balance moved by exactly the settled amounts.

Run (about 20 s)::

    .venv/bin/python benchmarks/settlement.py                       # pools 1,4,8; 500 settlements; C=64
    .venv/bin/python benchmarks/settlement.py --pools 8 --total 2000 --json

Progress goes to stderr, the table (and with ``--json`` one JSON object) to stdout.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import _svm
from _common import base_parser, cpu_seconds, emit_json, log, percentile, print_table, rss_kib, verdict

from x402_middleware.devchain import DevChain
from x402_middleware.evm.eip3009 import Authorization, new_nonce, sign_digest, transfer_digest
from x402_middleware.facilitator.onchain import OnChainFacilitator
from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload
from x402_middleware.networks import get_network

PRICE = 1_000  # $0.001 in USDC atomic units (6 decimals)
TARGET_TPS = 200.0  # issue 3: >= 200 settlements/s with a signer pool
TARGET_P50_MS = 20.0  # issue 3: p50 settle latency <= 20 ms


@dataclass
class Run:
    pool: int
    total: int
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    results: list[Any]
    payloads: list[PaymentPayload]
    client_cpu_s: float
    anvil_cpu_s: float
    blocks: int

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "signers": self.pool,
            "settlements": self.total,
            "concurrency": self.concurrency,
            "settlements_per_s": round(self.total / self.seconds, 1),
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2),
            "client_cpu_ms_per_settle": round(self.client_cpu_s * 1000 / self.total, 3),
            "anvil_cpu_ms_per_settle": round(self.anvil_cpu_s * 1000 / self.total, 3),
            "blocks_mined": self.blocks,
        }


def presign(chain: DevChain, requirements: PaymentRequirements, count: int) -> list[PaymentPayload]:
    """``count`` distinct authorizations, round-robin over the chain's payers (signed before timing)."""
    keys = [bytes.fromhex(k[2:]) for k in chain.payer_keys]
    valid_before = int(time.time()) + 3600
    payloads = []
    for i in range(count):
        payer = chain.payer_addresses[i % len(keys)]
        auth = Authorization(payer, requirements.pay_to, requirements.amount, 0, valid_before, new_nonce())
        digest = transfer_digest(
            auth,
            name=chain.token_name,
            version=chain.token_version,
            chain_id=chain.chain_id,
            verifying_contract=chain.asset,
        )
        signature = sign_digest(keys[i % len(keys)], digest)
        raw: dict[str, Any] = {
            "x402Version": 2,
            "accepted": requirements.to_v2(),
            "payload": {"signature": "0x" + signature.hex(), "authorization": auth.to_wire()},
        }
        payloads.append(parse_payment_payload(raw))
    return payloads


async def settle_all(
    facilitator: OnChainFacilitator, requirements: PaymentRequirements, payloads: list[PaymentPayload], concurrency: int
) -> tuple[float, list[float], list[Any]]:
    latencies = [0.0] * len(payloads)
    results: list[Any] = [None] * len(payloads)
    queue = iter(range(len(payloads)))

    async def worker() -> None:  # a fixed set of workers = a constant number of settlements in flight
        for i in queue:
            t0 = time.perf_counter()
            results[i] = await facilitator.settle(payloads[i], requirements)
            latencies[i] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, results


async def bench_pool(
    chain: DevChain, requirements: PaymentRequirements, pool: int, total: int, concurrency: int, warmup: int
) -> Run:
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:pool], network=requirements.network)
    try:
        # Warm up: chain-id check, fee cache, pooled keep-alive connections, each signer's nonce.
        warm = presign(chain, requirements, max(warmup, pool))
        await settle_all(facilitator, requirements, warm, min(concurrency, len(warm)))
        payloads = presign(chain, requirements, total)
        block0 = int(chain.rpc("eth_blockNumber"), 16)
        cpu0, anvil0 = time.process_time(), cpu_seconds(chain.pid)
        seconds, latencies, results = await settle_all(facilitator, requirements, payloads, concurrency)
        client_cpu, anvil_cpu = time.process_time() - cpu0, cpu_seconds(chain.pid) - anvil0
        blocks = int(chain.rpc("eth_blockNumber"), 16) - block0
    finally:
        await facilitator.aclose()
    return Run(pool, total, concurrency, seconds, latencies, results, warm + payloads, client_cpu, anvil_cpu, blocks)


def check_on_chain(chain: DevChain, run: Run) -> list[str]:
    """Every settlement succeeded and was mined from a pool key; returns problems (empty = all good)."""
    problems = []
    pool = {a.lower() for a in chain.facilitator_addresses[: run.pool]}
    hashes = [r.transaction for r in run.results]
    failed = [r for r in run.results if not r.success]
    if failed:
        problems.append(f"{len(failed)} settlements failed, e.g. {failed[0].error_reason}: {failed[0].error_message}")
    if len(set(hashes)) != len(hashes):
        problems.append("duplicate transaction hashes")
    senders = set()
    for h in hashes:
        receipt = chain.rpc("eth_getTransactionReceipt", h) if h else None
        if receipt is None or int(receipt["status"], 16) != 1:
            problems.append(f"transaction {h} not mined successfully")
            continue
        senders.add(receipt["from"].lower())
    if not senders <= pool:
        problems.append(f"transactions sent from outside the pool: {senders - pool}")
    if len(senders) != min(run.pool, run.concurrency):  # the least busy key sends: one at a time uses one key
        problems.append(f"only {len(senders)} of {run.pool} pool keys sent transactions")
    unused = [p for p in run.payloads if not chain.authorization_state(p.payer, p.data.authorization.nonce)]
    if unused:
        problems.append(f"{len(unused)} authorizations are not marked used on chain")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="base", choices=["base", "base-sepolia", "local"])
    parser.add_argument("--pools", default="1,4,8", help="signer-pool sizes to measure (comma-separated)")
    parser.add_argument("--total", type=int, default=500, help="settlements per pool size")
    parser.add_argument("--concurrency", type=int, default=64, help="settlements in flight")
    parser.add_argument("--payers", type=int, default=8, help="distinct payer wallets signing authorizations")
    parser.add_argument(
        "--latency-total",
        type=int,
        default=100,
        help="settlements of the unloaded latency run (one at a time, largest pool; 0 skips it)",
    )
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--no-solana", action="store_true", help="skip the Solana runs")
    args = parser.parse_args(argv)
    pools = [int(p) for p in args.pools.split(",")]

    log(f"starting anvil ({args.network}) with {args.payers} payers and {max(pools)} facilitator keys ...")
    with DevChain(args.network, payers=args.payers, facilitators=max(pools)) as chain:
        network = get_network(chain.network)
        assert network.asset is not None, f"{chain.network} has no USDC asset"
        requirements = PaymentRequirements(network, network.asset, PRICE, chain.pay_to, 300)
        watched = [chain.pay_to, *chain.payer_addresses]
        before = {a: chain.balance_of(a) for a in watched}
        plan = [(pool, args.total, args.concurrency) for pool in pools]
        if args.latency_total:
            plan.append((max(pools), args.latency_total, 1))
        runs = []
        for pool, total, concurrency in plan:
            log(f"pool of {pool} signer(s): {total} settlements, concurrency {concurrency} ...")
            run = asyncio.run(bench_pool(chain, requirements, pool, total, concurrency, args.warmup))
            row = run.row()
            log(f"  {row['settlements_per_s']} settlements/s, p50 {row['p50_ms']} ms; checking on chain ...")
            run_problems = check_on_chain(chain, run)
            runs.append((run, run_problems))
        # Balances: every settled authorization (warm-up included) moved exactly PRICE from its payer to pay_to.
        expected = dict(before)
        for run, _ in runs:
            for payload, result in zip(run.payloads[-run.total :], run.results):
                if result.success:
                    expected[payload.payer] -= PRICE
                    expected[chain.pay_to] += PRICE
            for payload in run.payloads[: -run.total]:  # warm-up settlements
                expected[payload.payer] -= PRICE
                expected[chain.pay_to] += PRICE
        after = {a: chain.balance_of(a) for a in watched}
        balance_problems = [f"{a}: expected {expected[a]}, got {after[a]}" for a in watched if after[a] != expected[a]]
        moved = after[chain.pay_to] - before[chain.pay_to]
        anvil_rss = rss_kib(chain.pid) / 1024
        timings = dict(chain.timings)

    rows = [run.row() for run, _ in runs]
    problems = [p for _, ps in runs for p in ps] + balance_problems
    # Throughput: the best run "with a pool" (pool sizes > 1 when measured). Latency: the unloaded run, since
    # under C concurrent settlements each one also waits for the others (Little's law: C / throughput).
    loaded = [r for r in rows if r["concurrency"] == args.concurrency]
    best = max([r for r in loaded if r["signers"] > 1] or loaded, key=lambda r: r["settlements_per_s"])
    latency = rows[-1] if args.latency_total else best
    tps_ok = best["settlements_per_s"] >= TARGET_TPS
    p50_ok = latency["p50_ms"] <= TARGET_P50_MS

    cols = [
        "signers",
        "settlements",
        "concurrency",
        "settlements_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "client_cpu_ms_per_settle",
        "anvil_cpu_ms_per_settle",
        "blocks_mined",
    ]
    heads = [
        "signers",
        "n",
        "C",
        "settle/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "client CPU ms/s",
        "anvil CPU ms/s",
        "blocks",
    ]
    print_table(
        heads,
        [[r[c] for c in cols] for r in rows],
        title=f"OnChainFacilitator settlement on anvil ({args.network}, automine), {args.payers} payers, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
    )
    settled = sum(len(run.payloads) for run, _ in runs)
    print(
        f"on-chain check: {settled} transactions, {moved} atomic units moved to pay_to "
        f"(expected {settled * PRICE}); {'all mined with status 1, nonces used, balances exact' if not problems else 'PROBLEMS:'}"
    )
    for p in problems[:20]:
        print(f"  - {p}")
    print(f"anvil RSS {anvil_rss:.0f} MiB")
    print(
        f"target >= {TARGET_TPS:.0f} settlements/s with a pool: {verdict(tps_ok)} "
        f"({best['settlements_per_s']}/s with {best['signers']} signers)"
    )
    print(
        f"target p50 settle latency <= {TARGET_P50_MS:.0f} ms: {verdict(p50_ok)} "
        f"({latency['p50_ms']} ms with {latency['signers']} signers, concurrency {latency['concurrency']})"
    )
    solana: dict[str, Any] | None = None
    if not args.no_solana and _svm.available():
        log(f"Solana: SolanaFacilitator on the LiteSVM dev chain, {args.total} settlements at C={args.concurrency} ...")
        sol_rows, sol_problems, facts = asyncio.run(
            _svm.settle_rows(
                args.total, args.concurrency, args.latency_total, args.payers, 1, settle_all, percentile, cpu_seconds
            )
        )
        solana = {"runs": sol_rows, "problems": sol_problems, **facts}
        problems += sol_problems
        sol_cols = list(sol_rows[0])
        print_table(
            ["n", "C", "settle/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "client CPU ms/s", "chain CPU ms/s"],
            [[r[c] for c in sol_cols] for r in sol_rows],
            title="SolanaFacilitator settlement on the LiteSVM dev chain (its own process; co-sign, simulate, "
            "send, confirm), one fee payer",
        )
        print(
            f"on-chain check: {facts['transactions']} transactions, {facts['moved_to_pay_to']} atomic units moved to "
            f"pay_to, {facts['fee_lamports']} lamports of fees paid by the fee payer; "
            f"{'all succeeded, balances exact' if not sol_problems else 'PROBLEMS:'}"
        )
        for p in sol_problems[:20]:
            print(f"  - {p}")
    if args.json:
        emit_json(
            {
                "solana": solana,
                "benchmark": "settlement",
                "network": args.network,
                "payers": args.payers,
                "runs": rows,
                "onchain_ok": not problems,
                "problems": problems,
                "transactions": settled,
                "moved_to_pay_to": moved,
                "anvil_rss_mib": round(anvil_rss, 1),
                "devchain_timings": timings,
                "targets": {"tps": TARGET_TPS, "tps_pass": tps_ok, "p50_ms": TARGET_P50_MS, "p50_pass": p50_ok},
            }
        )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
