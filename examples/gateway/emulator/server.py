"""Run the emulator (or any ASGI app) as a real HTTP server on 127.0.0.1 with a kernel-chosen port.

In-process (a uvicorn server in a daemon thread, stopped through its handle)::

    with EmulatorServer() as emu:
        httpx.post(emu.url + "/v1/chat/completions", ...)

Or as a child process, stopped by PID: ``with spawn_emulator() as (url, pid): ...``
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import uvicorn

from .app import create_emulator_app

_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")
_ROOT = Path(__file__).resolve().parents[3]


def bind_loopback(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket; with ``port=0`` the kernel picks a free port (no probing, no races)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class EmulatorServer:
    """uvicorn serving ``app`` (default: a new emulator) in a daemon thread; ``url`` once started."""

    def __init__(self, app: Any = None, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "critical") -> None:
        self.app = app if app is not None else create_emulator_app()
        self._sock = bind_loopback(port, host)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=f"emulator-{self.port}", daemon=True
        )

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.005)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def spawn_emulator(timeout: float = 20.0) -> Iterator[tuple[str, int]]:
    """``python -m examples.gateway.emulator --port 0`` as a child process; yields ``(url, pid)``, then SIGTERMs it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.gateway.emulator", "--port", "0"],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = _URL.search(line)
            url = m.group(1) if m else None
        if url is None:
            raise RuntimeError(f"the emulator process did not print its URL (exit code {proc.poll()})")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
