"""Real HTTP throughput and latency over uvicorn: bare Starlette vs OUR PaymentMiddleware vs the OFFICIAL x402 SDK.

Three uvicorn servers (one worker each, uvloop + httptools, pinned with ``taskset`` to the last CPU) serve the
same ``GET /paid`` handler: (a) bare, (b) behind our ``PaymentMiddleware``, (c) behind the official x402 2.25
``PaymentMiddlewareASGI``. Both paid servers use the same loopback zero-latency HTTP facilitator double
(``_fixtures.facilitator_double``): ours through ``HTTPFacilitator(url)``, the official through its
``HTTPFacilitatorClient``. A raw asyncio HTTP/1.1 load generator (keep-alive, fixed concurrency, pinned with the
facilitator to CPU 0) sends pre-signed, distinct ``PAYMENT-SIGNATURE`` payments answering each server's own 402.
Servers are measured in interleaved rounds (a b c a b c ...) and started and stopped by PID. An extra row, (d)
ours with the in-process zero-latency facilitator, shows the middleware's own cost over HTTP without the
facilitator hop (``--no-instant`` skips it), and (e) the same on a ``RedisStore`` (a local ``redis-server``
on CPU 0, started and stopped by PID; skipped with ``--no-redis`` or when redis-server is not installed), and (f)
the same with a ``SQLiteJournal`` (``synchronous=FULL``, group commit; ``--no-journal`` skips it).

    .venv/bin/python benchmarks/http_compare.py                 # ~60 s
    .venv/bin/python benchmarks/http_compare.py --duration 10 --rounds 3 --concurrency 64 --json

Baseline to compare with (``../shared/docs/performance.md``): the official middleware served 188 paid req/s with
a facilitator that did real ECDSA recovery; here the facilitator does none, which flatters the official SDK
(it asks the facilitator twice per request, we once).
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from _common import (
    LoadResult,
    Server,
    base_parser,
    cpu_seconds,
    emit_json,
    load,
    log,
    print_table,
    raw_request,
    rss_kib,
    start_redis,
    summarize,
    uvicorn_command,
)
from _fixtures import PAID_PATH, Payer

LAST_CPU = (os.cpu_count() or 1) - 1
UVICORN_EXTRA = ("--loop", "uvloop", "--http", "httptools")


@dataclass
class Target:
    """One server under test and what was measured on it."""

    name: str
    factory: str
    paid: bool
    server: Server | None = None
    payments: deque[str] = field(default_factory=deque)
    header: str = "payment-signature"
    runs: list[LoadResult] = field(default_factory=list)
    cpu_s: float = 0.0
    facilitator_cpu_s: float = 0.0
    rss_before: int = 0
    rss_after: int = 0

    def requests(self) -> Iterator[bytes]:
        """Raw requests built as the load generator takes them; a paid server's each spend one pooled payment."""
        assert self.server is not None
        host = self.server.host_header
        if not self.paid:
            plain = raw_request("GET", PAID_PATH, host)
            while True:
                yield plain
        while self.payments:
            yield raw_request("GET", PAID_PATH, host, {self.header: self.payments.popleft()})


def sign_for(target: Target, payer: Payer, count: int) -> None:
    """Top up ``target``'s pool to ``count`` payments answering its own 402 (fetched once)."""
    assert target.server is not None
    missing = count - len(target.payments)
    if not target.paid or missing <= 0:
        return
    challenge = httpx.get(target.server.url + PAID_PATH, timeout=30)
    if challenge.status_code != 402:
        raise RuntimeError(f"{target.name}: expected a 402 challenge, got {challenge.status_code}: {challenge.text}")
    log(f"  signing {missing} payments for {target.name} ...")
    target.header, values = payer.sign_many(challenge, missing)
    target.payments.extend(values)


def run_once(target: Target, facilitator: Server, *, duration: float, concurrency: int) -> LoadResult:
    assert target.server is not None
    pid = target.server.pid
    before, fac_before = cpu_seconds(pid), cpu_seconds(facilitator.pid)
    result = load(
        target.server.host, target.server.port, target.requests(), concurrency=concurrency, duration=duration, cpu=0
    )
    target.cpu_s += cpu_seconds(pid) - before
    target.facilitator_cpu_s += cpu_seconds(facilitator.pid) - fac_before
    if target.paid and not target.payments:
        log(f"  warning: {target.name} ran out of pre-signed payments after {result.elapsed:.1f} s")
    return result


def check(target: Target, result: LoadResult) -> None:
    """A throughput figure is only meaningful if every request got the paid 200."""
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if bad or result.errors:
        raise RuntimeError(
            f"{target.name}: non-200 answers {bad}, errors {result.errors[:3]}; sample headers {result.sample_headers}"
        )
    if target.paid and "payment-response" not in result.sample_headers.get(200, {}):
        raise RuntimeError(f"{target.name}: a paid 200 came without PAYMENT-RESPONSE: {result.sample_headers}")


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured run (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the servers (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per server first (default 1)")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=2500.0,
        help="paid req/s to pre-sign for during warm-up, before calibration (default 2500)",
    )
    parser.add_argument(
        "--no-instant",
        action="store_true",
        help="skip the extra row: ours with an in-process facilitator (no HTTP hop to settle)",
    )
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="skip the extra row: ours with an in-process facilitator on RedisStore (a local redis-server)",
    )
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="skip the extra row: ours with an in-process facilitator and a SQLite settlement journal",
    )
    args = parser.parse_args()

    targets = [
        Target("bare Starlette", "benchmarks._fixtures:bare", paid=False),
        Target("ours: PaymentMiddleware", "benchmarks._fixtures:ours", paid=True),
        Target("official x402 2.25", "benchmarks._fixtures:official", paid=True),
    ]
    if not args.no_instant:
        targets.append(Target("ours, in-process facilitator", "benchmarks._fixtures:ours_instant", paid=True))
    redis = None if args.no_instant or args.no_redis else start_redis(cpu=0)
    if redis is None and not (args.no_instant or args.no_redis):
        log("redis-server not installed: skipping the RedisStore row")
    if redis is not None:
        targets.append(Target("ours, in-process, RedisStore", "benchmarks._fixtures:ours_instant_redis", paid=True))
    journal = not (args.no_instant or args.no_journal)
    if journal:
        targets.append(
            Target("ours, in-process, SQLiteJournal", "benchmarks._fixtures:ours_instant_journal", paid=True)
        )
    payer = Payer()
    log("starting the facilitator double (CPU 0) ...")
    facilitator = Server(
        uvicorn_command("benchmarks._fixtures:facilitator_double", factory=True, extra=UVICORN_EXTRA), cpu=0
    ).start()
    try:
        env = {"X402_FACILITATOR_URL": facilitator.url}
        if redis is not None:
            env["X402_REDIS_URL"] = redis[1]
        for t in targets:
            log(f"starting {t.name} (CPU {LAST_CPU}) ...")
            t.server = Server(
                uvicorn_command(t.factory, factory=True, extra=UVICORN_EXTRA), cpu=LAST_CPU, env=env
            ).start()
        for t in targets:  # warm-up, and calibrate how many payments a measured run can use
            sign_for(t, payer, int(args.max_rate * args.warmup))
            log(f"warming up {t.name} for {args.warmup:.1f} s ...")
            warm = run_once(t, facilitator, duration=args.warmup, concurrency=args.concurrency)
            check(t, warm)
            t.cpu_s = t.facilitator_cpu_s = 0.0
            t.rss_before = rss_kib(t.server.pid)  # type: ignore[union-attr]
            sign_for(t, payer, int(max(warm.rate, 50) * 2.5 * args.duration * args.rounds) + args.concurrency)
        for r in range(args.rounds):
            for t in targets:
                log(f"round {r + 1}/{args.rounds}: {t.name}, {args.duration:.0f} s at C={args.concurrency} ...")
                result = run_once(t, facilitator, duration=args.duration, concurrency=args.concurrency)
                check(t, result)
                t.runs.append(result)
                log(f"  {result.rate:,.0f} req/s")
        for t in targets:
            t.rss_after = rss_kib(t.server.pid)  # type: ignore[union-attr]
    finally:
        for t in targets:
            if t.server is not None:
                t.server.stop()
        facilitator.stop()
        if redis is not None:
            redis[0].kill()
            redis[0].wait()

    rows: list[list[Any]] = []
    report: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "server_cpu": LAST_CPU,
        "targets": {},
    }
    rates: dict[str, float] = {}
    for t in targets:
        latencies = [x for run in t.runs for x in run.latencies]
        completed = sum(run.completed for run in t.runs)
        rate = completed / sum(run.elapsed for run in t.runs)
        run_rates = [run.rate for run in t.runs]
        lat = summarize(latencies, scale=1e3)
        cpu_us = t.cpu_s / completed * 1e6
        fac_us = t.facilitator_cpu_s / completed * 1e6
        rates[t.name] = rate
        rows.append(
            [
                t.name,
                f"{rate:,.0f}",
                f"{min(run_rates):,.0f}-{max(run_rates):,.0f}",
                f"{lat['p50']:.2f}",
                f"{lat['p95']:.2f}",
                f"{lat['p99']:.2f}",
                f"{cpu_us:,.0f}",
                f"{fac_us:,.0f}",
                f"{t.rss_before / 1024:.1f} -> {t.rss_after / 1024:.1f}",
            ]
        )
        report["targets"][t.name] = {
            "req_per_s": rate,
            "run_rates": run_rates,
            "latency_ms": lat,
            "server_cpu_us_per_req": cpu_us,
            "facilitator_cpu_us_per_req": fac_us,
            "rss_kib_before": t.rss_before,
            "rss_kib_after": t.rss_after,
            "requests": completed,
        }
    print_table(
        [
            "server (GET /paid)",
            "req/s",
            "per run",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "server CPU µs/req",
            "facilitator CPU µs/req",
            "RSS MiB before -> after",
        ],
        rows,
        title=f"HTTP over uvicorn on 127.0.0.1, C={args.concurrency}, {args.rounds} x {args.duration:.0f} s "
        f"per server interleaved; server on CPU {LAST_CPU}, load generator + facilitator on CPU 0",
    )
    bare, mine, official = (rates[t.name] for t in targets[:3])
    ratios = {"ours / bare": mine / bare, "official / bare": official / bare, "ours / official": mine / official}
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    cpu_ratio = (
        report["targets"][targets[2].name]["server_cpu_us_per_req"]
        / report["targets"][targets[1].name]["server_cpu_us_per_req"]
    )
    print(f"server CPU per paid request, official / ours: {cpu_ratio:.2f}x")
    print(
        f"(baseline in shared/docs/performance.md: official 188 paid req/s with an ECDSA-checking facilitator; "
        f"median run here {statistics.median(report['targets'][targets[2].name]['run_rates']):,.0f} req/s)"
    )
    memory = report["targets"].get("ours, in-process facilitator")
    for label, name in (("redis", "ours, in-process, RedisStore"), ("journal", "ours, in-process, SQLiteJournal")):
        other = report["targets"].get(name)
        if memory is None or other is None:
            continue
        ratios[f"{label} / in-memory"] = other["req_per_s"] / memory["req_per_s"]
        added = other["latency_ms"]["p50"] - memory["latency_ms"]["p50"]
        print(
            f"{label} / in-memory (in-process facilitator): {ratios[f'{label} / in-memory']:.2f}x, p50 {added:+.2f} ms"
        )
    report["ratios"] = ratios
    report["official_over_ours_cpu"] = cpu_ratio
    if args.json:
        emit_json(report)


if __name__ == "__main__":
    main()
