"""Shared helpers for the benchmark scripts: statistics, /proc readings, tables, servers and an HTTP load generator.

Benchmarks are plain scripts (``.venv/bin/python benchmarks/<name>.py``); the script's folder is on
``sys.path``, so they ``import _common``. Conventions (``../shared/docs/performance.md``, "How to benchmark here"):
progress goes to stderr (:func:`log`), final figures to stdout (:func:`print_table`, and one JSON object with
``--json`` via :func:`emit_json`). Nothing here knows about x402; it is reusable by any benchmark. Example::

    from _common import Server, base_parser, load, print_table, raw_request, summarize, uvicorn_command

    args = base_parser("my benchmark").parse_args()
    with Server(uvicorn_command("myapp:app"), cpu=1) as server:
        result = load(server.host, server.port, [raw_request("GET", "/", server.host_header)] * 5000,
                      concurrency=32, cpu=0)
    stats = summarize(result.latencies)          # microseconds
    print_table(["req/s", "p50 µs"], [[f"{result.rate:,.0f}", f"{stats['p50']:,.0f}"]])

Latencies are kept as float seconds from :func:`time.perf_counter`; money never passes through here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
#: The interpreter running the benchmark (the project's venv when run as ``.venv/bin/python benchmarks/x.py``).
PYTHON = sys.executable
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


# -- output -----------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    """Progress for the person watching (stderr, so stdout stays the figures only)."""
    print(message, file=sys.stderr, flush=True)


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark shares: ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="also print one JSON object with every figure")
    return parser


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """Print an aligned plain-text table to stdout (numbers right-aligned, text left-aligned).

    >>> print_table(["name", "n"], [["a", 1], ["bb", 22]])
    name   n
    ----  --
    a      1
    bb    22
    """
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    if title:
        print(f"\n{title}")

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?[×x%]?", text))


def emit_json(obj: Mapping[str, Any]) -> None:
    """Print one JSON object on one line (for ``--json``)."""
    print(json.dumps(obj, sort_keys=True, default=str))


def verdict(ok: bool) -> str:
    """``PASS`` or ``FAIL`` for a target check."""
    return "PASS" if ok else "FAIL"


# -- statistics -------------------------------------------------------------------------------------------------
def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted samples, linearly interpolated.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not sorted_samples:
        return math.nan
    rank = (len(sorted_samples) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (rank - lo)


def summarize(samples_s: Iterable[float], *, scale: float = 1e6) -> dict[str, float]:
    """``n``, ``mean``, ``min``, ``p50``, ``p95``, ``p99``, ``max`` of samples given in seconds, in ``scale`` units
    (µs by default; ``scale=1e3`` for ms).

    >>> summarize([0.001, 0.002, 0.003])["p50"]
    2000.0
    """
    data = sorted(samples_s)
    if not data:
        return {
            "n": 0,
            "mean": math.nan,
            "min": math.nan,
            "p50": math.nan,
            "p95": math.nan,
            "p99": math.nan,
            "max": math.nan,
        }
    return {
        "n": len(data),
        "mean": sum(data) / len(data) * scale,
        "min": data[0] * scale,
        "p50": percentile(data, 50) * scale,
        "p95": percentile(data, 95) * scale,
        "p99": percentile(data, 99) * scale,
        "max": data[-1] * scale,
    }


# -- processes (/proc) ------------------------------------------------------------------------------------------
def rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process in KiB (``VmRSS`` of ``/proc/<pid>/status``; ``None`` = this process)."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time a process has used so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid or os.getpid()}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces; skip past it
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU (no-op for ``None`` or when the CPU does not exist)."""
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def uvicorn_command(app: str, *, factory: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """``python -m uvicorn APP`` on 127.0.0.1 with a kernel-chosen port, one worker, no access log."""
    cmd = [
        PYTHON,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
        "--log-level",
        "info",
        *extra,
    ]
    return [*cmd, "--factory"] if factory else cmd


def start_redis(cpu: int | None = None) -> tuple[subprocess.Popen[bytes], str] | None:
    """A throw-away ``redis-server`` on a free port (no persistence), optionally pinned to ``cpu``: ``(process,
    URL)``, or ``None`` when it is not installed. The caller kills the process."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    if cpu is not None and cpu < (os.cpu_count() or 1):
        args = ["taskset", "-c", str(cpu), *args]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not answer PING")


class Server:
    """A server subprocess pinned with ``taskset`` to one CPU; ready once it prints ``http://127.0.0.1:PORT``.

    Stopped by SIGTERM to its PID (SIGKILL after ``stop_timeout``). Use as a context manager::

        with Server(uvicorn_command("benchmarks.fixtures:app"), cpu=1, env={"X": "1"}) as s:
            print(s.url, s.pid, rss_kib(s.pid))
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.command = list(command)
        if cpu is not None and cpu < (os.cpu_count() or 1):
            self.command = ["taskset", "-c", str(cpu), *self.command]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.output: list[str] = []
        self.port = 0
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        if self._proc is not None and self._proc.poll() is None:
            return self  # already running: a second start would orphan the first process
        # taskset execs the command, so the PID we hold is the server's own.
        self._proc = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def pump() -> None:  # keep reading so a chatty server never blocks on a full pipe
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line)
                m = _URL.search(line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not self.port and self._proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.05)
        if not self.port:
            self.stop()
            raise RuntimeError(f"server did not start: {' '.join(self.command)}\n{''.join(self.output)[-3000:]}")
        return self

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- HTTP load generator ----------------------------------------------------------------------------------------
def raw_request(
    method: str, path: str, host: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes, built before timing starts.

    >>> raw_request("GET", "/x", "127.0.0.1:80")
    b'GET /x HTTP/1.1\\r\\nhost: 127.0.0.1:80\\r\\n\\r\\n'
    """
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class LoadResult:
    """What a load run saw: per-request latencies (s), status counts, wall time, and errors."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)
    sample_headers: dict[int, dict[str, str]] = field(default_factory=dict)  # first response seen per status

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Completed requests per second of wall time."""
        return self.completed / self.elapsed if self.elapsed else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # chunk data + CRLF
            if size == 0:
                break
    elif status not in (204, 304) and not 100 <= status < 200:
        await reader.read()  # body ends at connection close
    return status, headers


async def aload(
    host: str, port: int, requests: Iterable[bytes], *, concurrency: int = 32, duration: float | None = None
) -> LoadResult:
    """Send ``requests`` over ``concurrency`` keep-alive connections, each waiting for its reply before the next.

    Stops when the requests run out or after ``duration`` seconds. ``requests`` may be a lazy iterator (e.g. one
    that pops pre-signed payments from a pool): a request is taken only when it is about to be sent. A connection
    that fails is reopened and the error recorded; the request it carried is not retried (so a payment is never
    sent twice).
    """
    source: Iterator[bytes] = iter(requests)
    result = LoadResult()
    deadline = math.inf if duration is None else time.perf_counter() + duration

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        # The deadline is checked before taking a request, so a lazy source loses nothing it did not send.
        while time.perf_counter() < deadline:
            request = next(source, None)
            if request is None:
                break
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                started = time.perf_counter()
                writer.write(request)
                status, headers = await _read_response(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1
                result.sample_headers.setdefault(status, headers)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors.append(repr(exc))
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def load(
    host: str,
    port: int,
    requests: Iterable[bytes],
    *,
    concurrency: int = 32,
    duration: float | None = None,
    cpu: int | None = None,
) -> LoadResult:
    """Blocking :func:`aload` on a fresh event loop (uvloop when installed), optionally pinned to ``cpu``."""
    if cpu is not None:
        previous = os.sched_getaffinity(0)
        pin(cpu)
    try:
        result: LoadResult = _run(aload(host, port, requests, concurrency=concurrency, duration=duration))
        return result
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, previous)


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)
