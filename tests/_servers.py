"""Run a real server on 127.0.0.1 with a kernel-chosen port, stopped by its PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")


@contextmanager
def uvicorn_server(
    app: str, *, factory: bool = False, env: dict[str, str] | None = None, extra_args: Sequence[str] = ()
) -> Iterator[str]:
    """Start ``uvicorn <app>`` in a subprocess on 127.0.0.1:0 and yield its base URL."""
    args = [
        sys.executable,
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
        *extra_args,
    ]
    if factory:
        args.append("--factory")
    with process_with_url(args, env=env) as url:
        yield url


@dataclass
class Live:
    """A running server: its base ``url``, its process and its output so far."""

    url: str
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        """``VmRSS`` of the process, from ``/proc/PID/status``."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.proc.pid}/status")

    def describe(self) -> str:
        return f"exit code {self.proc.poll()}, output:\n{''.join(self.output)[-3000:]}"


@contextmanager
def live_process(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0, pattern: re.Pattern[str] = _URL
) -> Iterator[Live]:
    """Start ``args``, wait for the first 127.0.0.1 URL it prints, yield it; SIGTERM (then SIGKILL) by PID after.

    The PID stays in reach: to tell a crash from an answer, and to read its RSS."""
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    live = Live("", proc)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            live.output.append(line)
            m = pattern.search(line)
            if m and not live.url:
                live.url = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not live.url and proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.05)
        if not live.url:
            raise RuntimeError(f"server did not start: {' '.join(args)}\n{live.describe()}")
        yield live
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def process_with_url(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30.0, pattern: re.Pattern[str] = _URL
) -> Iterator[str]:
    """Start a process, wait until it prints a 127.0.0.1 URL, yield it, then SIGTERM the PID."""
    with live_process(args, env=env, timeout=timeout, pattern=pattern) as live:
        yield live.url
