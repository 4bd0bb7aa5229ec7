"""Soak: many distinct paid calls through two gateway replicas sharing one Redis store and one settlement journal.

Two uvicorn replicas of the paid gateway (``_soak_app``), each with its own facilitator gas key, settle on one
dev chain (anvil, Base Sepolia) through :class:`~x402_middleware.facilitator.OnChainFacilitator`, share a
:class:`~x402_middleware.stores.redis.RedisStore` (a throw-away ``redis-server``) and one SQLite settlement
journal file, and call one upstream emulator. ``--requests`` distinct payments (from several payers) are sent
at ``--concurrency``, half to each replica. The books must balance exactly::

    on-chain (payee's balance change) = journal (settled sum) = number of 200s x price

and no request may take longer than the settle timeout (30 s). Prints latency p50/p95/p99, throughput, the three
sums and a verdict; exits 1 when the books do not balance.

    .venv/bin/python benchmarks/soak.py                        # 10,000 paid calls, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/soak.py --requests 1000 --json
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from _common import (
    LoadResult,
    Server,
    base_parser,
    emit_json,
    load,
    log,
    print_table,
    raw_request,
    start_redis,
    summarize,
    uvicorn_command,
    verdict,
)
from _fixtures import Payer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.gateway.emulator import spawn_emulator
from x402_middleware.devchain import DevChain
from x402_middleware.journal import SQLiteJournal

PATH = "/api/v1/chat/completions"
BODY = json.dumps({"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16})
SETTLE_TIMEOUT_S = 30.0
PAYERS = 4


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="distinct paid calls (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections, half per replica (default 32)")
    args = parser.parse_args()
    headers = {"content-type": "application/json"}
    workdir = tempfile.mkdtemp(prefix="x402-soak-")
    journal_path = str(Path(workdir) / "journal.db")
    redis = start_redis()
    if redis is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    log("starting the dev chain, the emulator and two gateway replicas ...")
    with DevChain("base-sepolia", payers=PAYERS, facilitators=2) as chain, spawn_emulator() as (emulator_url, _):
        env = {
            "SOAK_UPSTREAM": emulator_url,
            "SOAK_RPC_URL": chain.rpc_url,
            "SOAK_NETWORK": chain.network,
            "SOAK_PAY_TO": chain.pay_to,
            "SOAK_REDIS_URL": redis[1],
            "SOAK_REDIS_PREFIX": f"soak-{uuid.uuid4().hex}:",
            "SOAK_JOURNAL": journal_path,
        }
        replicas = [
            Server(uvicorn_command("benchmarks._soak_app:create", factory=True), env={**env, "SOAK_KEY": key}).start()
            for key in chain.facilitator_keys[:2]
        ]
        try:
            challenge = httpx.post(replicas[0].url + PATH, content=BODY, headers=headers)
            if challenge.status_code != 402:
                raise SystemExit(f"expected a 402, got {challenge.status_code}: {challenge.text[:300]}")
            price = int(json.loads(challenge.content)["accepts"][0]["maxAmountRequired"])
            per_payer = -(-args.requests // PAYERS)
            started = time.perf_counter()
            signed: list[tuple[str, str]] = []
            for key in chain.payer_keys:
                name, values = Payer(key).sign_many(challenge, per_payer)
                signed += [(name, v) for v in values]
            signed = signed[: args.requests]
            log(f"signed {len(signed)} payments in {time.perf_counter() - started:.1f} s; sending ...")
            before = chain.balance_of(chain.pay_to)
            streams: list[list[bytes]] = [[], []]
            for i, (name, value) in enumerate(signed):
                replica = replicas[i % 2]
                streams[i % 2].append(
                    raw_request("POST", PATH, replica.host_header, {**headers, name: value}, BODY.encode())
                )
            results: list[LoadResult] = []
            lock = threading.Lock()

            def drive(replica: Server, requests: list[bytes]) -> None:
                assert replica.port is not None
                result = load(replica.host, replica.port, requests, concurrency=max(args.concurrency // 2, 1))
                with lock:
                    results.append(result)

            wall = time.perf_counter()
            threads = [threading.Thread(target=drive, args=(r, s)) for r, s in zip(replicas, streams, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - wall
            on_chain = chain.balance_of(chain.pay_to) - before
        finally:
            for replica in replicas:
                replica.stop()
            redis[0].kill()
            redis[0].wait()
    with SQLiteJournal(journal_path) as journal:
        settled = journal.entries("settled")
        pending = journal.entries("claimed", "settling", "unknown")
    latencies = [x for r in results for x in r.latencies]
    ok = sum(r.statuses.get(200, 0) for r in results)
    other = {s: n for r in results for s, n in r.statuses.items() if s != 200}
    errors = sum(len(r.errors) for r in results)
    lat = summarize(latencies, scale=1e3)
    journal_sum = sum(e.amount for e in settled)
    books = on_chain == journal_sum == ok * price
    slow = max(latencies) < SETTLE_TIMEOUT_S
    good = books and slow and not other and not errors and not pending
    print_table(
        ["paid calls", "200s", "other", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [
                len(signed),
                ok,
                other or "-",
                errors,
                f"{ok / elapsed:,.0f}",
                f"{lat['p50']:.1f}",
                f"{lat['p95']:.1f}",
                f"{lat['p99']:.1f}",
                f"{max(latencies) * 1e3:.0f}",
            ]
        ],
        title=f"soak: two gateway replicas, one Redis, one SQLite journal, OnChainFacilitator on anvil, C={args.concurrency}",
    )
    print()
    print(
        f"on-chain {on_chain} = journal {journal_sum} ({len(settled)} rows) = 200s x price {ok * price}: {verdict(books)}"
    )
    print(f"slowest request {max(latencies):.2f} s < settle timeout {SETTLE_TIMEOUT_S:.0f} s: {verdict(slow)}")
    print(f"rows left pending in the journal: {len(pending)}")
    if args.json:
        emit_json(
            {
                "requests": len(signed),
                "ok": ok,
                "other": other,
                "errors": errors,
                "req_per_s": ok / elapsed,
                "latency_ms": lat,
                "on_chain": on_chain,
                "journal_sum": journal_sum,
                "expected": ok * price,
                "pass": good,
            }
        )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
