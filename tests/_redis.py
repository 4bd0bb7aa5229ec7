"""A real ``redis-server`` for tests: 127.0.0.1 on a kernel-chosen free port, no persistence unless asked,
stopped by its PID. Typical session fixture::

    @pytest.fixture(scope="session")
    def redis_url() -> Iterator[str]:
        with RedisServer() as server:
            yield server.url
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from typing import Self

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` in a temporary directory; ``persist=True`` keeps an fsync'd append-only file there, so a
    server killed with SIGKILL and started again (:meth:`kill`, :meth:`start`) remembers every write."""

    def __init__(self, *, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: make test installs it (apt-get install redis-server, as root)")
        self.binary, self.persist, self.port = binary, persist, free_port()
        self.dir = tempfile.mkdtemp(prefix="x402-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", *persistence]
        self.proc = subprocess.Popen([*args, "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (port {self.port} taken?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would (nothing flushed beyond what was fsync'd)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
