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


@contextmanager
def process_with_url(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30.0, pattern: re.Pattern[str] = _URL
) -> Iterator[str]:
    """Start a process, wait until it prints a 127.0.0.1 URL, yield it, then SIGTERM the PID."""
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = pattern.search(line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not found and proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.05)
        if not found:
            raise RuntimeError(f"server did not start: {' '.join(args)}\n{''.join(lines)[-3000:]}")
        yield found[0]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
