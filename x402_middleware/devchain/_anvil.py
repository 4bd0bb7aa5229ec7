"""Locating, starting and stopping the anvil binary.

anvil comes from the npm registry (``npm ci`` at the repo root installs ``@foundry-rs/anvil-linux-amd64``).
We start the native ELF directly, never the node wrapper, so the PID we hold is anvil's own and SIGTERM
reaches it (``../shared/docs/local-chain.md`` §1-2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

ANVIL_ENV = "X402_ANVIL"
_NPM_ANVIL = Path("node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil")
# x402_middleware/devchain/_anvil.py -> the repository root (only meaningful in a source checkout).
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = "Listening on "


class AnvilNotFoundError(RuntimeError):
    """No anvil binary could be found (see :func:`find_anvil` for the search order)."""


class AnvilStartError(RuntimeError):
    """anvil exited or stayed silent instead of printing its ``Listening on`` line."""


def find_anvil() -> str:
    """Return the path of the anvil executable.

    Search order: the ``X402_ANVIL`` environment variable, then
    ``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`` under the repository root and under the
    current directory, then ``anvil`` on ``PATH``.

    Example::

        path = find_anvil()   # '/work/main/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil'
    """
    explicit = os.environ.get(ANVIL_ENV)
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise AnvilNotFoundError(f"{ANVIL_ENV}={explicit!r} is not an executable file")
        return explicit
    for base in (_REPO_ROOT, Path.cwd()):
        candidate = base / _NPM_ANVIL
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilNotFoundError(
        "anvil not found. Run `npm ci` in the x402_middleware repository root (it installs "
        "@foundry-rs/anvil-linux-amd64 into node_modules/), or set "
        f"{ANVIL_ENV}=/path/to/anvil, or put anvil on PATH."
    )


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux SIGTERM anvil when its parent dies (even by SIGKILL), or ``None``.

    Without it a killed test run or ``make dev`` would leave anvil running forever. The kernel sends the
    signal when the *thread* that forked the child exits, so it is only armed from the main thread; libc
    is resolved here, before the fork, so the child only makes one system call before exec.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return arm


class AnvilProcess:
    """One running anvil bound to 127.0.0.1 on a kernel-chosen port."""

    def __init__(
        self,
        chain_id: int,
        *,
        executable: str | None = None,
        startup_timeout: float = 15.0,
        block_time: int | None = None,
    ) -> None:
        self.executable = executable or find_anvil()
        args = [self.executable, "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
        if block_time is not None:
            # A block every block_time seconds besides one per transaction (automine stays on): the head stays
            # fresh, as on a real chain, for eth_call simulations at "latest" (block.timestamp) after idling.
            args += ["--block-time", str(block_time), "--mixed-mining"]
        # anvil logs every request to stdout. One reader thread finds the "Listening on" line, then keeps
        # the pipe drained (a full pipe would block anvil) and the last lines for error messages.
        # (--silent would also hide the port.)
        self._tail: deque[str] = deque(maxlen=50)
        self._url: str | None = None
        self._ready = threading.Event()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - one async-signal-safe syscall, prepared before fork
        )
        self.pid = self._proc.pid
        self._reader = threading.Thread(target=self._read_stdout, name=f"anvil-{self.pid}-stdout", daemon=True)
        self._reader.start()
        self._ready.wait(startup_timeout)
        if self._url is None:
            if self._ready.is_set():  # stdout hit EOF: anvil is exiting; let it finish to report its code
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(2.0)
            code = self._proc.poll()
            status = f"exited with code {code}" if code is not None else f"printed no URL in {startup_timeout} s"
            self.stop()
            raise AnvilStartError(f"anvil ({self.executable}) {status}. Output:\n{self.output_tail()}")
        self.url: str = self._url

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._tail.append(line.rstrip())
            if self._url is None and line.startswith(_LISTENING):
                self._url = "http://" + line[len(_LISTENING) :].strip()
                self._ready.set()
        self._ready.set()  # EOF: anvil exited (before or after listening)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def output_tail(self) -> str:
        """The last lines anvil printed (for diagnostics)."""
        return "\n".join(self._tail)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM anvil by PID and wait for it; SIGKILL if it ignores SIGTERM. Idempotent."""
        if self._proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._proc.wait()
        self._reader.join(1.0)  # anvil is gone, so its stdout reaches EOF
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return self._proc.returncode
