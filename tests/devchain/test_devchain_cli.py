"""``python -m x402_middleware.devchain``: one JSON line on stdout, clean shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import httpx

from x402_middleware.devchain import BASE_SEPOLIA_USDC, decode_output, encode_call

REPO_ROOT = Path(__file__).resolve().parents[2]


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert line, f"no stdout line within {timeout} s"
    return line[0]


def test_cli_prints_json_and_stops_anvil_on_sigterm(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "x402_middleware.devchain", "--network", "base-sepolia", "--payers", "2"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    anvil_pid = None
    try:
        info = json.loads(_read_line(proc.stdout, 30))
        log = stderr_path.read_text()
        match = re.search(r"anvil pid (\d+)", log)
        assert match, log
        anvil_pid = int(match.group(1))
        assert Path(f"/proc/{anvil_pid}").exists()

        assert info["chain_id"] == 84532 and info["network"] == "eip155:84532"
        assert info["asset"] == BASE_SEPOLIA_USDC
        assert (info["token_name"], info["token_version"]) == ("USDC", "2")
        assert len(info["payer_private_keys"]) == len(info["payer_addresses"]) == 2
        assert len(info["facilitator_private_keys"]) == 1
        call = {"to": info["asset"], "data": "0x" + encode_call("balanceOf(address)", info["payer_addresses"][1]).hex()}
        answer = httpx.post(
            info["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
        ).json()
        assert decode_output("(uint256)", bytes.fromhex(answer["result"][2:])) == (1_000_000_000,)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one line was printed
        assert not Path(f"/proc/{anvil_pid}").exists()
        assert "stopped" in stderr_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if anvil_pid is not None and Path(f"/proc/{anvil_pid}").exists():
            os.kill(anvil_pid, signal.SIGKILL)


def test_anvil_dies_with_a_killed_parent() -> None:
    """A SIGKILLed owner (a crashed test run, a killed `make dev`) must not leave anvil running."""
    code = (
        "import sys; from x402_middleware.devchain import DevChain; c = DevChain('local', payers=0).start(); "
        "print(c.pid, flush=True); sys.stdin.read()"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    anvil_pid = int(owner.stdout.readline())
    os.kill(anvil_pid, 0)  # running
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    for _ in range(100):
        try:
            os.kill(anvil_pid, 0)
        except ProcessLookupError:
            return
        if _zombie(anvil_pid):
            return
        threading.Event().wait(0.05)
    os.kill(anvil_pid, signal.SIGKILL)
    raise AssertionError("anvil outlived its SIGKILLed parent")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z"
    except (OSError, IndexError):
        return False
