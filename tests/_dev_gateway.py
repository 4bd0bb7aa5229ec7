"""``make dev`` as a real process: ``python -m examples.gateway.dev --port 0``, its JSON line, and on-chain reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests._servers import ROOT
from x402_middleware.devchain._rpc import SyncRPC
from x402_middleware.evm.abi import decode_output, encode_call

# Provider keys (and AWS credentials: Bedrock) would switch the dev gateway to real upstreams; BLOCKRUN_API_KEY would
# switch BlockRun's SDKs to their API-key rail. Tests never touch the internet, so they are removed from the child's
# environment.
SCRUBBED = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "XAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "MOONSHOT_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_BASE_URL",
    "BLOCKRUN_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "BEDROCK_ENDPOINT_URL",
)


@dataclass
class DevGateway:
    """The running dev gateway: its JSON line (``info``), process, and output so far."""

    info: dict[str, Any]
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def balance_of(self, address: str) -> int:
        rpc = SyncRPC(self.info["rpc_url"])
        try:
            data = rpc(
                "eth_call",
                {"to": self.info["asset"], "data": "0x" + encode_call("balanceOf(address)", address).hex()},
                "latest",
            )
        finally:
            rpc.close()
        return int(decode_output("(uint256)", bytes.fromhex(data[2:]))[0])

    def receipt_status(self, tx_hash: str) -> int:
        rpc = SyncRPC(self.info["rpc_url"])
        try:
            return int(rpc("eth_getTransactionReceipt", tx_hash)["status"], 16)
        finally:
            rpc.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(extra)
    return env


@contextmanager
def dev_gateway(*args: str, timeout: float = 60.0) -> Iterator[DevGateway]:
    """Start the dev gateway on a kernel-chosen port with the emulator upstream; SIGTERM it by PID afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.gateway.dev", "--port", "0", *args],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stderr or ()), daemon=True).start()
    info: dict[str, Any] | None = None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    try:
        if box and box[0].strip():
            info = json.loads(box[0])
        if info is None:
            raise RuntimeError(
                f"the dev gateway did not print its JSON line (exit {proc.poll()}):\n{''.join(output)[-3000:]}"
            )
        threading.Thread(target=lambda: proc.stdout.read() if proc.stdout else None, daemon=True).start()
        yield DevGateway(info, proc, output)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; its state in /proc says it is gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
