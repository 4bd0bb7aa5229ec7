"""Our gateway against the LiteLLM proxy and the Portkey gateway, in the same run, on the same emulated upstream.

Five processes: the upstream emulator (``python -m examples.gateway.emulator``, pinned to CPU 1), and on CPU 0 our
gateway (uvicorn serving ``benchmarks._gateway_app:create``, free route, request log written to /dev/null as in
``gateway.py``), the LiteLLM proxy and the Portkey gateway, each configured with the emulator as its one
OpenAI-compatible upstream; plus this script's raw asyncio keep-alive load generator (``_common.load``). Every
scenario sends the same free chat request (``nvidia/nemotron-3.5-lightning``, one user message, ``max_tokens`` 64,
non-streamed or streamed to the last byte) at C=1 and C=16, in interleaved rounds (direct, ours, litellm, portkey,
direct, ...): "direct" is the exact request our gateway sends upstream, sent to the emulator itself, and
``added = server - direct`` per percentile. Server CPU per call is the user + system time of the server's process
tree (``/proc/<pid>/stat`` of the process and its descendants) over its timed requests.

Before timing, one request of each kind through each server must come back from the emulator (its
``system_fingerprint`` ``fp_emulator`` and its echo of the prompt), so a peer that answers from elsewhere, or
fails, is caught.

The peers are installed on first use into ``~/.cache/x402_middleware/peers/`` (``$X402_PEERS_CACHE``): LiteLLM in its
own venv (PyPI), Portkey under an npm prefix (the npm registry); never into the project's ``.venv``. That first run
needs the network (about two minutes); later runs are offline. A peer that fails to install or start is reported
and skipped. Pinned versions and configurations: :data:`LITELLM_VERSION`, :data:`PORTKEY_VERSION`,
:func:`litellm_config`, :func:`portkey_headers` (``benchmarks/README.md``, "Gateway vs peers").

Run (about four minutes on a 2-core machine once the peers are installed)::

    .venv/bin/python benchmarks/peers.py
    .venv/bin/python benchmarks/peers.py --peers litellm --no-stream --json
    .venv/bin/python benchmarks/peers.py --install-only
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import httpx
from _common import (
    PYTHON,
    Server,
    base_parser,
    cpu_seconds,
    emit_json,
    load,
    log,
    print_table,
    raw_request,
    summarize,
    verdict,
)
from gateway import (
    EMULATOR_CPU,
    FREE_MODEL,
    GATEWAY_CPU,
    PROMPT,
    caller_body,
    gateway_request,
    gateway_server,
    upstream_request,
)

from examples.gateway.catalog import load_catalog

LITELLM_VERSION = "1.106.12"
PORTKEY_VERSION = "1.15.2"
#: Portkey's HTTP stack, which its package.json leaves as ranges: pinned to what a fresh install resolved on
#: 2026-12-04, so every run races the same code.
PORTKEY_OVERRIDES = {"hono": "4.13.23", "@hono/node-server": "1.19.19"}
PEERS = ("litellm", "portkey")
CACHE = Path(os.environ.get("X402_PEERS_CACHE", Path.home() / ".cache" / "x402_middleware" / "peers"))
LAUNCHER = Path(__file__).resolve().parent / "_portkey_launch.mjs"
CHAT_PATH = "/v1/chat/completions"
JSON_HEADERS = {"content-type": "application/json"}
EMULATOR_KEY = "emulator"
#: What only the emulator answers: its system_fingerprint, and the reply echoes the prompt.
EMULATOR_MARK = "fp_emulator"
# Targets (issue 13): free path at C=1; at C=16 ours ahead of both peers on added p99.
TARGET_C1_P50_MS = 0.5
TARGET_C1_P99_MS = 1.0
TARGET_CPU_MS = 0.4


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message says why (the run goes on without it)."""


# -- installing the peers ---------------------------------------------------------------------------------------
def _run(cmd: Sequence[str], what: str, cwd: Path | None = None, timeout: float = 900) -> None:
    started = time.perf_counter()
    log(f"  $ {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{what}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PeerUnavailable(f"{what} failed (exit {proc.returncode}):\n{tail}")
    log(f"  done in {time.perf_counter() - started:.0f} s")


def install_litellm(cache: Path = CACHE) -> Path:
    """The ``litellm`` CLI of ``litellm[proxy]==LITELLM_VERSION`` in its own venv under ``cache`` (made on first use)."""
    home = cache / f"litellm-{LITELLM_VERSION}"
    binary = home / "bin" / "litellm"
    requirement = f"litellm[proxy]=={LITELLM_VERSION}"
    if _installed(home, requirement) and binary.exists():
        return binary
    log(f"installing LiteLLM proxy {LITELLM_VERSION} into {home} (first run only; needs PyPI, ~2 min)")
    shutil.rmtree(home, ignore_errors=True)
    _run([PYTHON, "-m", "venv", str(home)], "creating the LiteLLM venv")
    pip = [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, requirement], f"pip install {requirement}")
    if not binary.exists():
        raise PeerUnavailable(f"pip installed litellm but {binary} is missing")
    (home / ".installed").write_text(requirement)
    return binary


def install_portkey(cache: Path = CACHE) -> Path:
    """Portkey's ``start-server.js`` from ``@portkey-ai/gateway@PORTKEY_VERSION`` under an npm prefix in ``cache``."""
    home = cache / f"portkey-{PORTKEY_VERSION}"
    entry = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    manifest = {
        "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
        "overrides": PORTKEY_OVERRIDES,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    if _installed(home, text) and entry.exists():
        return entry
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerUnavailable("node and npm are needed for the Portkey gateway (apt-get install nodejs npm)")
    log(f"installing @portkey-ai/gateway {PORTKEY_VERSION} into {home} (first run only; needs the npm registry)")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "package.json").write_text(text)
    _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], "npm install @portkey-ai/gateway", home)
    if not entry.exists():
        raise PeerUnavailable(f"npm installed @portkey-ai/gateway but {entry} is missing")
    (home / ".installed").write_text(text)
    return entry


def _installed(home: Path, what: str) -> bool:
    """Whether ``home`` holds a finished install of exactly ``what`` (the marker is written last)."""
    try:
        return (home / ".installed").read_text() == what
    except OSError:
        return False


def node_package_versions(entry: Path, names: Sequence[str] = ("hono", "@hono/node-server")) -> dict[str, str]:
    """Versions npm resolved for Portkey's unpinned dependencies (they move with each fresh install)."""
    modules = entry.parents[3]  # .../node_modules/@portkey-ai/gateway/build/start-server.js -> node_modules
    found = {}
    for name in names:
        try:
            found[name] = json.loads((modules / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            continue
    return found


# -- configuring the peers --------------------------------------------------------------------------------------
def litellm_config(model: str, upstream_model: str, api_base: str) -> str:
    """LiteLLM's ``config.yaml``: one model routed to the emulator as an OpenAI-compatible upstream.

    No database, no cache, no callbacks, and no master key (``dangerously_permit_weak_or_unset_master_key``):
    the least work per call, like our free route, which has no authentication either.
    """
    return (
        "model_list:\n"
        f"  - model_name: {json.dumps(model)}\n"
        "    litellm_params:\n"
        f"      model: {json.dumps('openai/' + upstream_model)}\n"
        f"      api_base: {json.dumps(api_base)}\n"
        f"      api_key: {json.dumps(EMULATOR_KEY)}\n"
        "general_settings:\n"
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )


def portkey_headers(api_base: str) -> dict[str, str]:
    """Portkey's per-request routing headers: the ``openai`` provider at a custom host (the emulator)."""
    return {
        **JSON_HEADERS,
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": api_base,
        "authorization": f"Bearer {EMULATOR_KEY}",
    }


#: uvicorn's logging for LiteLLM: its start-up lines (the URL) on stdout, no access log line per request (ours runs
#: with ``--no-access-log`` too).
LITELLM_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
    "loggers": {
        "uvicorn": {"handlers": ["out"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def litellm_server(binary: Path, config: Path) -> Server:
    """The LiteLLM proxy on 127.0.0.1, kernel-chosen port, one worker (its default), ``config`` as written above."""
    logging_config = config.with_name("litellm-logging.json")
    logging_config.write_text(json.dumps(LITELLM_LOGGING))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_DOCS": "True"}  # the bundled price map: no download
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", "0", "--num_workers", "1"]
    command += ["--log_config", str(logging_config)]
    return Server(command, cpu=GATEWAY_CPU, env=env, cwd=config.parent, start_timeout=180)


def portkey_server(entry: Path) -> Server:
    command = [shutil.which("node") or "node", str(LAUNCHER), str(entry), "--headless"]
    return Server(command, cpu=GATEWAY_CPU, env={"NODE_ENV": "production"}, cwd=entry.parent, start_timeout=60)


# -- measuring --------------------------------------------------------------------------------------------------
def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (``/proc/<pid>/task/<tid>/children``)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo += [int(child) for child in f.read().split()]
            except OSError:
                continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (threads included)."""
    total = 0.0
    for member in tree_pids(pid):
        try:
            total += cpu_seconds(member)
        except OSError:  # exited between the listing and the read
            continue
    return total


@dataclass
class Target:
    """One server under test with the exact request bytes it gets."""

    name: str
    server: Server
    request: bytes
    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    elapsed: float = 0.0
    failed: str | None = None

    def run(self, count: int, concurrency: int, *, timed: bool = True) -> None:
        cpu0 = tree_cpu_seconds(self.server.pid)
        result = load(self.server.host, self.server.port, [self.request] * count, concurrency=concurrency)
        bad = {k: v for k, v in result.statuses.items() if k != 200}
        if result.errors or bad:
            sample = result.errors[0] if result.errors else result.sample_headers
            raise RuntimeError(f"{self.name}: {len(result.errors)} errors, non-200 {bad}: {sample}")
        if timed:
            self.cpu_s += tree_cpu_seconds(self.server.pid) - cpu0
            self.elapsed += result.elapsed
            self.latencies += result.latencies


def added_ms(direct: Sequence[float], through: Sequence[float]) -> dict[str, float]:
    """``through pX - direct pX`` in ms for p50/p95/p99 (latencies in seconds), as in ``gateway.py``.

    >>> added_ms([0.001, 0.001, 0.001], [0.003, 0.003, 0.003])["p50"]
    2.0
    """
    d, t = summarize(direct, scale=1e3), summarize(through, scale=1e3)
    return {q: t[q] - d[q] for q in ("p50", "p95", "p99")}


def scenario(
    name: str, targets: Sequence[Target], *, concurrency: int, rounds: int, per_round: int, warmup: int
) -> list[dict[str, Any]]:
    """Warm every target up, then ``rounds`` interleaved rounds (each target in turn); one result row per target.

    ``targets[0]`` is the direct path. A peer that fails mid-run is dropped from the scenario and reported.
    """
    log(f"{name}, C={concurrency}: {warmup} warm-up, then {rounds} x {per_round} requests per server, interleaved")
    live = list(targets)

    def attempt(target: Target, count: int, timed: bool) -> None:
        try:
            target.run(count, concurrency, timed=timed)
        except RuntimeError as exc:
            if target is targets[0] or target.name == "ours":
                raise
            target.failed = str(exc)[:500]
            live.remove(target)
            log(f"  {target.name} dropped: {target.failed}")

    for target in list(live):
        target.latencies, target.cpu_s, target.elapsed, target.failed = [], 0.0, 0.0, None
        attempt(target, warmup, False)
    for _ in range(rounds):
        for target in list(live):
            attempt(target, per_round, True)
    direct = targets[0]
    rows = []
    for target in targets:
        row: dict[str, Any] = {"scenario": name, "concurrency": concurrency, "server": target.name}
        if target.failed is not None or not target.latencies:
            row["failed"] = target.failed or "not run"
        else:
            n = len(target.latencies)
            row |= {
                "requests": n,
                "ms": summarize(target.latencies, scale=1e3),
                "added_ms": added_ms(direct.latencies, target.latencies),
                "rps": n / target.elapsed,
                "cpu_ms_per_call": target.cpu_s / n * 1e3,
            }
        rows.append(row)
    return rows


def through_emulator(body: str, prompt: str = PROMPT) -> bool:
    """Whether a response body (JSON, or SSE ``data:`` lines) came from the emulator: its fingerprint and echo.

    >>> through_emulator('{"system_fingerprint":"fp_emulator","choices":[{"message":{"content":"Echo (m): hi"}}]}', "hi")
    True
    >>> through_emulator('{"choices":[{"message":{"content":"hi"}}]}', "hi")
    False
    """
    if EMULATOR_MARK not in body:
        return False
    if body.lstrip().startswith("{"):
        try:
            text = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return False
    else:
        pieces = []
        for line in body.splitlines():
            data = line.removeprefix("data:").strip()
            if not line.startswith("data:") or data == "[DONE]":
                continue
            try:
                for choice in json.loads(data).get("choices") or ():
                    pieces.append((choice.get("delta") or {}).get("content") or "")
            except (ValueError, AttributeError):
                return False
        text = "".join(pieces)
    return isinstance(text, str) and text.startswith("Echo (") and text.endswith(prompt)


def check_route(name: str, url: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> None:
    """One request through ``url`` must be answered 200 by the emulator; raises ``PeerUnavailable`` otherwise."""
    try:
        response = httpx.post(url + CHAT_PATH, json=body, headers=dict(headers), timeout=30)
    except httpx.HTTPError as exc:
        raise PeerUnavailable(f"{name}: request failed: {exc!r}") from None
    if response.status_code != 200 or not through_emulator(response.text):
        raise PeerUnavailable(
            f"{name}: not answered by the emulator: HTTP {response.status_code} {response.text[:300]}"
        )


# -- output -----------------------------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def _is(row: Mapping[str, Any], scenario_name: str, concurrency: int | None, server: str) -> bool:
    """Whether ``row`` is that server's in that scenario (at that concurrency, or any for ``None``)."""
    return (
        row["scenario"] == scenario_name
        and row["server"] == server
        and (concurrency is None or row["concurrency"] == concurrency)
    )


def added_of(
    rows: Sequence[Mapping[str, Any]], scenario_name: str, concurrency: int, server: str, q: str
) -> float | None:
    """The added ``q`` (p50/p95/p99) ms of one row, ``None`` when that server did not run."""
    for row in rows:
        if _is(row, scenario_name, concurrency, server):
            return row["added_ms"][q] if "added_ms" in row else None
    return None


def summary_line(rows: Sequence[Mapping[str, Any]], scenario_name: str = "chat") -> str:
    """``SUMMARY added p50 C=1: ours X ms, litellm Y ms, portkey Z ms; C=16: ...``, then the same for p99.

    >>> rows = [{"scenario": "chat", "concurrency": c, "server": s, "added_ms": {"p50": v, "p99": 2 * v}}
    ...         for c, v in ((1, 0.5), (16, 4.0)) for s in ("ours", "litellm", "portkey")]
    >>> summary_line(rows)
    'SUMMARY added p50 C=1: ours 0.50 ms, litellm 0.50 ms, portkey 0.50 ms; C=16: ours 4.00 ms, litellm 4.00 ms, \
portkey 4.00 ms; added p99 C=1: ours 1.00 ms, litellm 1.00 ms, portkey 1.00 ms; C=16: ours 8.00 ms, litellm 8.00 ms, \
portkey 8.00 ms'
    """
    parts = []
    for q in ("p50", "p99"):
        halves = []
        for c in (1, 16):
            cells = ", ".join(f"{s} {_fmt(added_of(rows, scenario_name, c, s, q))} ms" for s in ("ours", *PEERS))
            halves.append(f"C={c}: {cells}")
        parts.append(f"added {q} " + "; ".join(halves))
    return "SUMMARY " + "; ".join(parts)


def targets_report(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """The issue's targets on the non-streamed free chat rows: ``(description, met)`` each."""
    out: list[tuple[str, bool]] = []
    ours1 = next((r for r in rows if _is(r, "chat", 1, "ours")), None)
    if ours1 is not None and "added_ms" in ours1:
        p50, p99 = ours1["added_ms"]["p50"], ours1["added_ms"]["p99"]
        out.append((f"C=1 added p50 {p50:.2f} ms <= {TARGET_C1_P50_MS} ms", p50 <= TARGET_C1_P50_MS))
        out.append((f"C=1 added p99 {p99:.2f} ms <= {TARGET_C1_P99_MS} ms", p99 <= TARGET_C1_P99_MS))
    # CPU per call at C=16, where the worker is saturated: the cost of a call itself. At C=1 each call also pays
    # the event loop's sleep and wake-ups (twice: the caller's request, the upstream's answer); shown beside it.
    cpu = {r["concurrency"]: r["cpu_ms_per_call"] for r in rows if _is(r, "chat", None, "ours") and "added_ms" in r}
    if 16 in cpu:
        at1 = f" (C=1: {cpu[1]:.3f} ms)" if 1 in cpu else ""
        text = f"gateway CPU per free call at C=16 {cpu[16]:.3f} ms <= {TARGET_CPU_MS} ms{at1}"
        out.append((text, cpu[16] <= TARGET_CPU_MS))
    ours16 = added_of(rows, "chat", 16, "ours", "p99")
    for peer in PEERS:
        theirs = added_of(rows, "chat", 16, peer, "p99")
        if ours16 is not None and theirs is not None:
            out.append((f"C=16 added p99 ours {ours16:.2f} ms < {peer} {theirs:.2f} ms", ours16 < theirs))
    return out


def report(rows: list[dict[str, Any]], skipped: Mapping[str, str], info: Mapping[str, Any], as_json: bool) -> None:
    table = []
    for r in rows:
        if "added_ms" not in r:
            table.append([r["scenario"], r["concurrency"], r["server"], "failed", "", "", "", "", ""])
            continue
        m, a = r["ms"], r["added_ms"]
        table.append(
            [
                r["scenario"],
                r["concurrency"],
                r["server"],
                f"{m['p50']:.2f}/{m['p95']:.2f}/{m['p99']:.2f}",
                "" if r["server"] == "direct" else f"{a['p50']:+.2f}",
                "" if r["server"] == "direct" else f"{a['p95']:+.2f}",
                "" if r["server"] == "direct" else f"{a['p99']:+.2f}",
                f"{r['rps']:,.0f}",
                f"{r['cpu_ms_per_call']:.3f}",
            ]
        )
    print_table(
        ["scenario", "C", "server", "p50/p95/p99 ms", "added p50", "added p95", "added p99", "req/s", "CPU ms/call"],
        table,
        title="Free chat through each gateway vs direct to the emulator (CPU: the server's process tree; "
        "direct: the emulator's)",
    )
    for name, reason in skipped.items():
        print(f"\n{name} skipped: {reason}")
    for r in rows:
        if "failed" in r:
            print(f"\n{r['server']} failed in {r['scenario']} C={r['concurrency']}: {r['failed']}")
    versions = ", ".join(f"{k} {v}" for k, v in info.get("portkey_deps", {}).items())
    print(
        f"\nLiteLLM proxy {info['litellm']}, Portkey gateway {info['portkey']}" + (f" ({versions})" if versions else "")
    )
    if "load_before" in info:
        before, after = info["load_before"], info["load_after"]
        print(
            f"load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
            f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}"
        )
    print("\nTargets (issue 13)")
    checks = targets_report(rows)
    for text, ok in checks:
        print(f"  {text}: {verdict(ok)}")
    print()
    print(summary_line(rows))
    if as_json:
        emit_json(
            {
                "benchmark": "peers",
                "results": rows,
                "skipped": dict(skipped),
                "info": dict(info),
                "targets": [{"target": t, "ok": ok} for t, ok in checks],
            }
        )


# -- main -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Our gateway vs the LiteLLM proxy and the Portkey gateway, same emulator, same run")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers to race (default: both)")
    parser.add_argument("--requests", type=int, default=1200, help="timed requests per server at C=16 (default 1200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed scenario")
    parser.add_argument("--install-only", action="store_true", help="install the peers into the cache and exit")
    args = parser.parse_args(argv)
    wanted = [p for p in args.peers.split(",") if p]
    unknown = set(wanted) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")

    installers: dict[str, Callable[[], Path]] = {"litellm": install_litellm, "portkey": install_portkey}
    installed: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for peer in wanted:
        try:
            installed[peer] = installers[peer]()
        except PeerUnavailable as exc:
            skipped[peer] = f"install failed: {exc}"
            log(f"{peer}: {skipped[peer]}")
    info: dict[str, Any] = {"litellm": LITELLM_VERSION, "portkey": PORTKEY_VERSION, "cache": str(CACHE)}
    info["load_before"] = os.getloadavg()
    if "portkey" in installed:
        info["portkey_deps"] = node_package_versions(installed["portkey"])
    if args.install_only:
        log(f"installed: {', '.join(installed) or 'none'}; {info}")
        return 0 if not skipped else 1

    rounds = max(1, args.rounds)
    per16 = max(1, args.requests // rounds)
    per1 = max(1, per16 // 2)
    model = load_catalog().get(FREE_MODEL)
    assert model is not None
    rows: list[dict[str, Any]] = []
    log(f"emulator on CPU {EMULATOR_CPU}; ours and the peers on CPU {GATEWAY_CPU}; load generator unpinned")
    with Server([PYTHON, "-m", "examples.gateway.emulator", "--port", "0"], cpu=EMULATOR_CPU) as emulator:
        api_base = emulator.url + "/v1"
        servers: dict[str, Server] = {}
        try:
            servers["ours"] = gateway_server(emulator).start()
            for peer, path in installed.items():
                try:
                    servers[peer] = _start_peer(peer, path, api_base, model.upstream_model)
                except (RuntimeError, PeerUnavailable) as exc:
                    skipped[peer] = f"did not start: {str(exc)[-1500:]}"
                    log(f"{peer}: {skipped[peer]}")
            scenarios = [("chat", False)] + ([] if args.no_stream else [("stream", True)])
            for name, stream in scenarios:
                targets = _targets(emulator, servers, api_base, model.upstream_model, stream, skipped)
                for c, per, warm in ((1, per1, 100), (16, per16, 300)):
                    rows += scenario(name, targets, concurrency=c, rounds=rounds, per_round=per, warmup=warm)
        finally:
            for server in servers.values():
                server.stop()
    info["load_after"] = os.getloadavg()
    report(rows, skipped, info, args.json)
    return 0


def _start_peer(peer: str, path: Path, api_base: str, upstream_model: str) -> Server:
    log(f"starting {peer}")
    if peer == "litellm":
        config = CACHE / "litellm-config.yaml"
        config.write_text(litellm_config(FREE_MODEL, upstream_model, api_base))
        return litellm_server(path, config).start()
    return portkey_server(path).start()


def _targets(
    emulator: Server,
    servers: Mapping[str, Server],
    api_base: str,
    upstream_model: str,
    stream: bool,
    skipped: dict[str, str],
) -> list[Target]:
    """The direct path and every started server, each with its request bytes, each checked once end to end."""
    body = caller_body(FREE_MODEL, stream=stream)
    targets = [Target("direct", emulator, upstream_request(emulator.url, body, emulator.host_header))]
    for name, server in servers.items():
        if name in skipped:
            continue
        if name == "ours":
            headers: Mapping[str, str] = JSON_HEADERS
            sent = body
        elif name == "litellm":
            headers, sent = JSON_HEADERS, body
        else:  # portkey forwards the model name as given
            headers, sent = portkey_headers(api_base), {**body, "model": upstream_model}
        try:
            check_route(name, server.url, headers, sent)
        except PeerUnavailable as exc:
            if name == "ours":
                raise
            skipped[name] = str(exc)
            log(f"{name}: skipped: {exc}")
            continue
        request = (
            gateway_request(server.host_header, body)
            if name == "ours"
            else raw_request("POST", CHAT_PATH, server.host_header, headers, json.dumps(sent).encode())
        )
        targets.append(Target(name, server, request))
    return targets


if __name__ == "__main__":
    sys.exit(main())
