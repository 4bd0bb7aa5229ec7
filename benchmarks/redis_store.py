"""RedisStore's asyncio path: one script call per command (redis-py as it comes) vs our per-loop-turn pipelining.

A paid request makes two store operations (``reserve`` before the app, ``swap`` after settlement). In one run,
against one throw-away ``redis-server`` (127.0.0.1, no persistence, started and stopped by PID), N concurrent
tasks (the requests of one busy replica) each claim and settle distinct keys; the client process's CPU per
operation is what a replica pays on top of the in-memory store. ``direct`` awaits each Lua script on its own
(``Script.__call__``, a pooled connection per command); ``RedisStore`` is the shipped store, which sends the
calls made during one event-loop turn as one pipeline and a lone call alone.

    .venv/bin/python benchmarks/redis_store.py           # ~10 s
    .venv/bin/python benchmarks/redis_store.py --json
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import base_parser, emit_json, log, print_table, start_redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from x402_middleware.stores import CLAIMED, SETTLED, PaymentRecord
from x402_middleware.stores.redis import _RESERVE, _SWAP, RedisStore, _encode, _ms

Op = Callable[[str], Awaitable[Any]]


async def measure(claim: Op, settle: Op, tasks: int, per_task: int) -> tuple[float, float]:
    """(operations per second, client CPU µs per operation) for ``tasks`` concurrent claim+settle loops."""

    async def worker(i: int) -> None:
        for j in range(per_task):
            key = f"{i}:{j}:{uuid.uuid4().hex}"
            await claim(key)
            await settle(key)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    ops = 2 * tasks * per_task
    return ops / (time.perf_counter() - wall), (time.process_time() - cpu) / ops * 1e6


async def run(url: str, concurrency: list[int], ops: int, rounds: int) -> list[dict[str, Any]]:
    store = RedisStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex}:")
    assert store._async_client is not None
    areserve = store._async_client.register_script(_RESERVE)
    aswap = store._async_client.register_script(_SWAP)
    settled = _encode(PaymentRecord(SETTLED, "0x" + "ab" * 32))

    async def direct_claim(key: str) -> Any:
        return await areserve(keys=[store.prefix + key], args=[_encode(CLAIMED), _ms(60)])

    async def direct_settle(key: str) -> Any:
        return await aswap(keys=[store.prefix + key], args=[_encode(CLAIMED), settled, _ms(60)])

    async def store_claim(key: str) -> Any:
        return await store.reserve(key, 60)

    async def store_settle(key: str) -> Any:
        return await store.swap(key, CLAIMED, PaymentRecord(SETTLED, "0x" + "ab" * 32), 60)

    candidates = {
        "direct (one call per command)": (direct_claim, direct_settle),
        "RedisStore": (store_claim, store_settle),
    }
    await measure(store_claim, store_settle, 8, 100)  # warm-up: connections, scripts loaded
    await measure(direct_claim, direct_settle, 8, 100)
    rows: list[dict[str, Any]] = []
    for tasks in concurrency:
        per_task = max(ops // (2 * tasks), 1)
        for name, (claim, settle) in candidates.items():
            samples = []
            for r in range(rounds):
                log(f"C={tasks} {name} round {r + 1}/{rounds}")
                samples.append(await measure(claim, settle, tasks, per_task))
            best = min(samples, key=lambda s: s[1])
            rows.append({"concurrency": tasks, "client": name, "ops_per_s": best[0], "cpu_us_per_op": best[1]})
    await store.aclose()
    return rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=12_000, help="operations per measurement (default 12,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the lowest CPU is kept (default 3)")
    args = parser.parse_args()
    started = start_redis()
    if started is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    proc, url = started
    try:
        rows = asyncio.run(run(url, [1, 4, 32], args.ops, args.rounds))
    finally:
        proc.kill()
        proc.wait()
    print_table(
        ["concurrent requests", "client", "ops/s", "client CPU µs/op", "µs per paid request (2 ops)"],
        [
            [
                r["concurrency"],
                r["client"],
                f"{r['ops_per_s']:,.0f}",
                f"{r['cpu_us_per_op']:.1f}",
                f"{2 * r['cpu_us_per_op']:.0f}",
            ]
            for r in rows
        ],
        title="RedisStore asyncio client CPU (one process, local redis-server, lowest of the rounds)",
    )
    if args.json:
        emit_json({"rows": rows})


if __name__ == "__main__":
    main()
