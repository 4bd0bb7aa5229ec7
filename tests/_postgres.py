"""A real PostgreSQL server for tests: a fresh cluster in a temporary directory, 127.0.0.1 on a free port,
stopped by its PID. PostgreSQL refuses to run as root, so under root (CI) it runs as Debian's ``postgres``
user (its own PID, not a wrapper's). Typical session fixture::

    @pytest.fixture(scope="session")
    def postgres_url() -> Iterator[str]:
        with PostgresServer() as server:
            yield server.url
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Self

import pytest

from tests._redis import free_port


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL is not installed: make test installs it (apt-get install postgresql, as root)")
    return os.path.dirname(found[-1])


class PostgresServer:
    """``initdb`` + ``postgres`` with trust authentication on 127.0.0.1 (a throw-away test cluster)."""

    def __init__(self) -> None:
        self.bin, self.port = _bindir(), free_port()
        self.dir = tempfile.mkdtemp(prefix="x402-pg-")
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        data = os.path.join(self.dir, "data")
        if not os.path.exists(data):
            subprocess.run(
                [f"{self.bin}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.dir,
                **self._user,
            )
        args = [f"{self.bin}/postgres", "-D", data, "-h", "127.0.0.1", "-p", str(self.port), "-k", self.dir]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir, **self._user
        )
        import psycopg

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode} (port {self.port} taken?)")
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not accept connections within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # postgres "fast" shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
