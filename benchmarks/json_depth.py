"""Untrusted JSON: our depth guard (``x402_middleware._json.loads``) vs ``json.loads`` alone, orjson and msgspec.

The project rule is to use a library made for the job unless our own is proven needed; this is that proof. In ONE
run, interleaved and pinned to one CPU, it times every candidate per call on the same bodies (small chat, 1 MiB
chat with ~2,000 messages, 1 MiB base64 string, an x402 v2 payment payload, a hostile 1 MiB ``[[[...]]]``, shallow
1 MiB ``[][][]...`` and ``[[],[],...]``) and reports p50/p99 µs and MB/s (10^6 bytes per second at p50). Then,
because the guard exists for it, it checks each candidate's safety in subprocesses with eth_account imported first
(which raises the recursion limit to 100,000): does it survive ``[`` x 100,000 and x 1,000,000, and at what depth
does it refuse. ``json.loads`` alone is never timed on the hostile body (it would crash the benchmark), nor is
any candidate that did not survive the safety probes. orjson and msgspec are optional: install them into the venv
for the benchmark only (``.venv/bin/pip install orjson msgspec``); without them their rows are absent.

    .venv/bin/python benchmarks/json_depth.py          # ~35 s on 2 cores
    .venv/bin/python benchmarks/json_depth.py --rounds 60 --json
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import PYTHON, base_parser, emit_json, log, pin, print_table, summarize, verdict

MIB = 1 << 20
SMALL = 64 * 1024  # bodies up to this size are called many times per batch, bigger ones a few
SURVIVE_DEPTHS = (100_000, 1_000_000)
# Depths tried in one probe process, lowest first, until the candidate refuses (then bisected) or dies.
LADDER = (64, 128, 256, 257, 512, 1000, 1024, 1025, 2048, 4096, 8192, 16_384, 32_768, 65_536, 100_000)

Decode = Callable[[bytes], Any]


# -- candidates -------------------------------------------------------------------------------------------------
def _ours() -> Decode:
    from x402_middleware import _json

    return _json.loads


def _orjson() -> Decode:
    decode: Decode = importlib.import_module("orjson").loads
    return decode


def _msgspec() -> Decode:
    decode: Decode = importlib.import_module("msgspec.json").decode
    return decode


#: name -> (loader, third party). Loaders import lazily so that a probe subprocess loads only its own candidate.
CANDIDATES: dict[str, tuple[Callable[[], Decode], bool]] = {
    "json.loads (unsafe)": (lambda: json.loads, False),
    "_json.loads (ours)": (_ours, False),
    "orjson.loads": (_orjson, True),
    "msgspec.json.decode": (_msgspec, True),
}


def available() -> dict[str, Decode]:
    out: dict[str, Decode] = {}
    for name, (loader, _) in CANDIDATES.items():
        try:
            out[name] = loader()
        except ImportError:
            log(f"{name}: not importable, skipped (.venv/bin/pip install orjson msgspec to include it)")
    return out


# -- inputs -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    name: str
    data: bytes
    hostile: bool = False  # deep enough to crash an unguarded parser: only candidates proven safe parse it
    realistic: bool = False  # a body real clients send (the speed-up summary is over these)


def _message(i: int, rng: random.Random) -> dict[str, str]:
    words = " ".join(
        rng.choice(("payment", "token", "model", "the", "gateway", "x402", "chain", "ok")) for _ in range(60)
    )
    return {"role": ("user", "assistant")[i % 2], "content": f'{i}: {words} \u00e9\u4e2d "quoted" \\n'}


def chat_body(messages: int, *, target: int | None = None, seed: int = 1) -> bytes:
    """An OpenAI-style chat completion request; with ``target``, messages are added until it reaches that size."""
    rng = random.Random(seed)
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "stream": False,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                        "required": ["city"],
                    },
                },
            }
        ],
        "messages": [{"role": "system", "content": "You are a helpful assistant."}],
    }
    body["messages"] += [_message(i, rng) for i in range(messages)]
    data = json.dumps(body).encode()
    if target is not None:
        while len(data) < target:
            body["messages"].append(_message(len(body["messages"]), rng))
            data = json.dumps(body).encode()
    return data


def base64_body(size: int) -> bytes:
    """A chat request carrying one image as a ``data:`` URL: one ~``size`` byte base64 string."""
    head: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}]}],
    }
    image = base64.b64encode(random.Random(2).randbytes(size * 3 // 4 - 200)).decode()
    head["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}})
    return json.dumps(head).encode()


def payment_payload() -> bytes:
    """A signed x402 v2 ``PaymentPayload`` as the PAYMENT-SIGNATURE header carries it (base64-decoded)."""
    from _fixtures import NETWORK, PAY_TO, PAYER_KEY

    from x402_middleware.evm.eip3009 import Authorization, address_of, new_nonce, sign_digest, transfer_digest
    from x402_middleware.models import PaymentRequirements, ResourceInfo
    from x402_middleware.networks import get_network

    net = get_network(NETWORK)
    assert net.asset is not None and net.chain_id is not None
    resource = ResourceInfo(
        "https://api.example.com/v1/chat/completions?model=gpt-4o-mini",
        "Chat completion with gpt-4o-mini, priced per request by the x402 gateway (max 512 output tokens)",
        "application/json",
    )
    req = PaymentRequirements(net, net.asset, 1000, PAY_TO, resource=resource)
    key = bytes.fromhex(PAYER_KEY[2:])
    now = int(time.time())
    auth = Authorization(address_of(key), PAY_TO, 1000, now - 600, now + 3600, new_nonce())
    extra = req.wire_extra()
    digest = transfer_digest(
        auth, name=extra["name"], version=extra["version"], chain_id=net.chain_id, verifying_contract=net.asset.address
    )
    wire = {
        "x402Version": 2,
        "resource": resource.to_wire(),
        "accepted": req.to_v2(),
        "payload": {"signature": "0x" + sign_digest(key, digest).hex(), "authorization": auth.to_wire()},
        "extensions": {
            "bazaar": {
                "info": {"input": {"type": "http", "method": "POST", "bodyType": "json"}, "output": {"type": "json"}},
                "schema": {"type": "object", "properties": {"messages": {"type": "array"}}},
            }
        },
    }
    return json.dumps(wire).encode()


def bodies() -> list[Body]:
    half = MIB // 2
    shallow = b"[" + b",".join([b"[]"] * ((MIB - 2) // 3)) + b"]"
    return [
        Body("small chat (few messages)", chat_body(3), realistic=True),
        Body("x402 v2 payment payload", payment_payload(), realistic=True),
        Body("1 MiB chat (~2,000 messages)", chat_body(0, target=MIB), realistic=True),
        Body("1 MiB one base64 string", base64_body(MIB), realistic=True),
        Body("hostile 1 MiB [*n ]*n", b"[" * half + b"]" * half, hostile=True),
        Body("shallow 1 MiB [][][]... (invalid)", b"[]" * half),
        Body("shallow 1 MiB [[],[],...] (valid)", shallow),
    ]


def _outcome(decode: Decode, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode(data)
    except ValueError as exc:  # every candidate's decode error is a ValueError (msgspec's too)
        return type(exc).__name__, None


# -- safety probes (subprocesses) -------------------------------------------------------------------------------
def probe_main(name: str, depths: Sequence[int], eth_account: bool) -> None:
    """Child process: parse ``[`` x d + ``]`` x d for each depth, one JSON line per result, flushed before the next
    (a SIGSEGV then still leaves the last line read). In ladder mode (several depths) stop at the first refusal and
    bisect for the deepest accepted depth."""
    if eth_account:
        importlib.import_module("eth_account")  # raises sys.getrecursionlimit() to 100,000 (py_ecc), as in production
    decode = CANDIDATES[name][0]()

    def attempt(depth: int) -> str | None:
        try:
            decode(b"[" * depth + b"]" * depth)
        except (ValueError, RecursionError, MemoryError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    print(json.dumps({"recursion_limit": sys.getrecursionlimit()}), flush=True)
    last_ok = 0
    for depth in depths:
        error = attempt(depth)
        print(json.dumps({"depth": depth, "error": error}), flush=True)
        if error is None:
            last_ok = depth
        elif len(depths) > 1:
            lo, hi = last_ok, depth  # lo accepted, hi refused
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if attempt(mid) is None else (lo, mid)
            print(json.dumps({"max_accepted": lo}), flush=True)
            return


@dataclass
class Probe:
    returncode: int
    recursion_limit: int | None
    results: list[dict[str, Any]]
    max_accepted: int | None

    @property
    def crashed(self) -> str | None:
        if self.returncode < 0:
            return "SIGSEGV" if self.returncode == -11 else f"signal {-self.returncode}"
        return f"exit {self.returncode}" if self.returncode else None

    def summary(self, depth: int) -> str:
        """What happened at ``depth``: ``accepted``, ``refused (Type)`` or the crash."""
        for r in self.results:
            if r.get("depth") == depth:
                return "accepted" if r["error"] is None else f"refused ({r['error'].split(':')[0]})"
        return f"{self.crashed} (rc {self.returncode})" if self.crashed else "not reached"


def run_probe(name: str, depths: Sequence[int], *, eth_account: bool = True) -> Probe:
    cmd = [PYTHON, __file__, "--probe", name, "--depths", ",".join(map(str, depths))]
    if not eth_account:
        cmd.append("--no-eth-account")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    limit = next((ln["recursion_limit"] for ln in lines if "recursion_limit" in ln), None)
    max_ok = next((ln["max_accepted"] for ln in lines if "max_accepted" in ln), None)
    return Probe(proc.returncode, limit, [ln for ln in lines if "depth" in ln], max_ok)


def safety(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        log(f"safety probes: {name} (subprocesses, eth_account imported first) ...")
        survive = {d: run_probe(name, [d]) for d in SURVIVE_DEPTHS}
        ladder = run_probe(name, LADDER)
        default_limit = run_probe(name, [SURVIVE_DEPTHS[0]], eth_account=False)
        accepted = [r["depth"] for r in ladder.results if r["error"] is None]
        if ladder.max_accepted is not None:
            refuses = f"refuses at {ladder.max_accepted + 1:,}"
        elif ladder.crashed:
            reached = max(accepted, default=0)
            dead = next((d for d in LADDER if d > reached), None)
            refuses = f"never; accepts {reached:,}, {ladder.crashed} by {dead:,}"
        else:
            refuses = f"none up to {LADDER[-1]:,}"
        errors = sorted({r["error"] for p in (*survive.values(), ladder) for r in p.results if r["error"]})
        out[name] = {
            "recursion_limit": survive[SURVIVE_DEPTHS[0]].recursion_limit,
            "survives": {d: p.summary(d) for d, p in survive.items()},
            "safe": all(p.crashed is None for p in survive.values()),
            "refuses": refuses,
            "max_accepted": ladder.max_accepted,
            "default_limit_100k": default_limit.summary(SURVIVE_DEPTHS[0]),
            "errors": errors,
        }
    return out


# -- semantics: where a candidate answers differently from json.loads on the same bytes ----------------------------
SEMANTIC_CASES: dict[str, bytes] = {
    "integer > 2**64 (uint256-sized)": b'{"value": 115792089237316195423570985008687907853269984665640564039457}',
    'lone surrogate "\\ud800"': b'"\\ud800"',
    "UTF-16 body (BOM)": "[1]".encode("utf-16"),
    "UTF-8 BOM": b"\xef\xbb\xbf[1]",
    "NaN": b"[NaN]",
}


def semantics(decoders: dict[str, Decode]) -> list[list[str]]:
    rows = []
    for case, data in SEMANTIC_CASES.items():
        row = [case]
        for decode in decoders.values():
            try:
                result = decode(data)
                text = repr(result)
                if isinstance(result, dict):
                    text = type(result["value"]).__name__
                row.append(text if len(text) < 24 else text[:21] + "...")
            except ValueError as exc:
                row.append(f"error ({type(exc).__name__})")
        rows.append(row)
    return rows


# -- timing -----------------------------------------------------------------------------------------------------
def time_all(
    decoders: dict[str, Decode], cases: list[Body], safe: dict[str, bool], rounds: int, seed: int
) -> dict[tuple[str, str], list[float]]:
    """Per-call wall latencies (s) of every (body, candidate) pair, interleaved: each round visits every body and,
    per body, every candidate in a shuffled order, a batch of calls each (GC off within a batch)."""
    rng = random.Random(seed)
    samples: dict[tuple[str, str], list[float]] = {}
    plan = [(b, [n for n in decoders if not b.hostile or safe.get(n, False)]) for b in cases]
    clock = time.perf_counter
    for r in range(rounds):
        if r % 10 == 0:
            log(f"  round {r + 1}/{rounds} ...")
        gc.collect()
        for body, names in plan:
            reps = 100 if len(body.data) <= SMALL else 3
            names = names[:]
            rng.shuffle(names)
            for name in names:
                decode, data, out = decoders[name], body.data, samples.setdefault((body.name, name), [])
                gc.disable()
                try:
                    for _ in range(reps):
                        t0 = clock()
                        try:
                            decode(data)
                        except ValueError:
                            pass
                        out.append(clock() - t0)
                finally:
                    gc.enable()
    return samples


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1, help="CPU to pin to (default: last)")
    parser.add_argument("--seed", type=int, default=402)
    # Internal: the safety probe subprocess runs this script with these.
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--depths", help=argparse.SUPPRESS)
    parser.add_argument("--no-eth-account", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_main(args.probe, [int(d) for d in args.depths.split(",")], not args.no_eth_account)
        return

    pin(args.cpu)
    importlib.import_module("eth_account")  # the production condition: recursion limit 100,000
    decoders = available()
    probes = safety(list(decoders))
    safe = {name: bool(p["safe"]) and name != "json.loads (unsafe)" for name, p in probes.items()}

    log("building bodies ...")
    cases = bodies()
    for body in cases:  # a timing of a parser that answers differently would be meaningless
        if body.hostile:
            continue
        expected = _outcome(json.loads, body.data)
        for name, decode in decoders.items():
            got = _outcome(decode, body.data)
            assert (got[0] == "ok") == (expected[0] == "ok") and got[1] == expected[1], (body.name, name, got[0])

    log(
        f"timing {len(decoders)} candidates x {len(cases)} bodies, {args.rounds} interleaved rounds, CPU {args.cpu} ..."
    )
    samples = time_all(decoders, cases, safe, args.rounds, args.seed)

    rows: list[list[Any]] = []
    report: dict[str, Any] = {
        "rounds": args.rounds,
        "cpu": args.cpu,
        "python": sys.version.split()[0],
        "recursion_limit": sys.getrecursionlimit(),
        "versions": versions(),
        "bodies": {},
        "safety": {n: {**p, "survives": {str(d): s for d, s in p["survives"].items()}} for n, p in probes.items()},
    }
    for body in cases:
        baseline = samples.get((body.name, "json.loads (unsafe)"))
        base_p50 = summarize(baseline)["p50"] if baseline else None
        entry: dict[str, Any] = {"bytes": len(body.data), "candidates": {}}
        for name, decode in decoders.items():
            timed = samples.get((body.name, name))
            if timed is None:
                reason = "never run (would crash)" if name == "json.loads (unsafe)" else "skipped: unsafe in probe"
                rows.append([body.name, f"{len(body.data):,}", name, reason, "", "", "", "", ""])
                entry["candidates"][name] = {"skipped": reason}
                continue
            stats = summarize(timed)
            outcome = _outcome(decode, body.data)[0]
            mb_s = len(body.data) / (stats["p50"] / 1e6) / 1e6
            ratio = f"{stats['p50'] / base_p50:.2f}x" if base_p50 else "-"
            rows.append(
                [
                    body.name,
                    f"{len(body.data):,}",
                    name,
                    outcome,
                    f"{stats['n']:,}",
                    f"{stats['p50']:,.1f}",
                    f"{stats['p99']:,.1f}",
                    f"{mb_s:,.0f}",
                    ratio,
                ]
            )
            entry["candidates"][name] = {"outcome": outcome, "latency_us": stats, "mb_per_s": mb_s}
        report["bodies"][body.name] = entry

    print_table(
        ["body", "bytes", "candidate", "outcome", "n", "p50 µs", "p99 µs", "MB/s", "p50 vs json"],
        rows,
        title=f"Per-call parse time, bytes in, one CPU ({args.cpu}), {args.rounds} interleaved rounds, GC off per batch",
    )
    print("(MB/s: 10^6 bytes per second at p50; p50 vs json: this p50 / json.loads p50 on the same body)")

    srows = []
    for name, p in probes.items():
        srows.append(
            [
                name,
                f"{p['recursion_limit']:,}" if p["recursion_limit"] else "?",
                *p["survives"].values(),
                p["refuses"],
                p["default_limit_100k"],
            ]
        )
    print_table(
        ["candidate", "rec. limit", "[ x 100,000", "[ x 1,000,000", "depth limit", "[ x 100,000, limit 1,000"],
        srows,
        title="Safety: [ x d + ] x d in a subprocess with eth_account imported first (last column: without it)",
    )
    for name, p in probes.items():
        for error in p["errors"]:
            print(f"  {name}: {error[:110]}")

    print_table(
        ["input", *decoders],
        semantics(decoders),
        title="Answers that differ from json.loads (same bytes)",
    )

    print()
    ours = report["bodies"]
    for name in decoders:
        if not CANDIDATES[name][1]:
            continue
        faster = [
            ours[b.name]["candidates"]["_json.loads (ours)"]["latency_us"]["p50"]
            / ours[b.name]["candidates"][name]["latency_us"]["p50"]
            for b in cases
            if b.realistic and "latency_us" in ours[b.name]["candidates"].get(name, {})
        ]
        speedup = f"{min(faster):.1f}x-{max(faster):.1f}x" if faster else "-"
        print(
            f"{name}: safe at depth with recursion limit 100,000: {verdict(safe[name])}; "
            f"p50 speed-up over ours on the 4 realistic bodies: {speedup}"
        )
    if args.json:
        emit_json(report)


def versions() -> dict[str, str]:
    out = {}
    for module in ("orjson", "msgspec"):
        try:
            out[module] = str(importlib.import_module(module).__version__)
        except ImportError:
            pass
    return out


if __name__ == "__main__":
    main()
