"""README's offline quick start, run as written: ``python -m x402_middleware.devchain.sandbox``, the Starlette example
under uvicorn configured only by the ``export`` line the sandbox prints, and the ``X402Auth`` one-liner; then the
balances on the chain, and Ctrl+C stopping the facilitator and anvil.

The only changes to the README's commands: ``python``/``uvicorn`` run from this interpreter, and the ports are free
ones (the sandbox's ``--port 0``, the app's instead of 8000) so that parallel runs do not collide.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
SECTION = re.compile(r"<!-- offline-quickstart[^>]*-->(.*?)<!-- /offline-quickstart -->", re.DOTALL)
BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
PRICE = 1000  # examples/starlette_app.py's default X402_PRICE, $0.001, in USDC atomic units


def _readme_commands() -> list[list[str]]:
    section = SECTION.search(README.read_text("utf-8"))
    assert section, "README.md lost its offline-quickstart section"
    blocks = [shlex.split(block) for block in BLOCK.findall(section.group(1))]
    assert [b[0] for b in blocks] == ["python", "uvicorn", "python"], blocks
    return blocks


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert line and line[0], f"no stdout line within {timeout} s"
    return line[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _balance(rpc_url: str, token: str, holder: str) -> int:
    call = {"to": token, "data": "0x70a08231" + holder[2:].lower().rjust(64, "0")}  # balanceOf(address)
    answer = httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]})
    return int(answer.json()["result"], 16)


def _wait_until_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the example app exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_the_readme_offline_quickstart_pays_the_starlette_example(tmp_path: Path) -> None:
    sandbox_cmd, app_cmd, client_cmd = _readme_commands()
    env = {k: v for k, v in os.environ.items() if not k.startswith("X402_") or k == "X402_ANVIL"}
    sandbox_log = tmp_path / "sandbox.txt"
    with sandbox_log.open("w") as stderr:
        sandbox = subprocess.Popen(
            [sys.executable, *sandbox_cmd[1:], "--port", "0"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    app: subprocess.Popen[bytes] | None = None
    anvil_pid = None
    try:
        info = json.loads(_read_line(sandbox.stdout, 60))
        log = sandbox_log.read_text()
        anvil = re.search(r"anvil pid (\d+)", log)
        export = re.search(r"^export (.+)$", log, re.MULTILINE)
        assert anvil and export, log
        anvil_pid = int(anvil.group(1))
        pasted = dict(item.split("=", 1) for item in shlex.split(export.group(1)))
        assert pasted == {
            "X402_FACILITATOR_URL": info["facilitator_url"],
            "X402_NETWORK": info["network"],
            "X402_PAY_TO": info["pay_to"],
            "X402_PAYER_KEY": info["payer_private_key"],
        }
        assert info["network"] == "eip155:84532"  # the example's default network: nothing else to configure
        env.update(pasted)
        rpc, token, payer, pay_to = info["rpc_url"], info["asset"], info["payer_address"], info["pay_to"]
        before = _balance(rpc, token, payer), _balance(rpc, token, pay_to)

        port = _free_port()
        assert app_cmd[-2:] == ["--port", "8000"]
        app = subprocess.Popen(
            [sys.executable, "-m", *app_cmd[:-1], str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_serving(f"http://127.0.0.1:{port}/free", app)
        assert httpx.get(f"http://127.0.0.1:{port}/weather").status_code == 402

        assert client_cmd[1] == "-c" and "127.0.0.1:8000" in client_cmd[2]
        code = client_cmd[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        paid = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert paid.returncode == 0, paid.stderr
        assert paid.stdout.startswith("200 {'forecast': 'sunny'"), paid.stdout
        assert "SettleResult(success=True" in paid.stdout and payer in paid.stdout, paid.stdout
        assert (_balance(rpc, token, payer), _balance(rpc, token, pay_to)) == (before[0] - PRICE, before[1] + PRICE)

        sandbox.send_signal(signal.SIGINT)  # Ctrl+C
        assert sandbox.wait(15) == 0, sandbox_log.read_text()
        assert sandbox.stdout is not None and sandbox.stdout.read() == ""  # exactly one JSON line
        assert not Path(f"/proc/{anvil_pid}").exists()
        assert "stopped" in sandbox_log.read_text()
    finally:
        for proc in (app, sandbox):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if sandbox.stdout is not None:
            sandbox.stdout.close()
        if anvil_pid is not None and Path(f"/proc/{anvil_pid}").exists():
            os.kill(anvil_pid, signal.SIGKILL)


def test_anvil_dies_with_a_killed_sandbox(tmp_path: Path) -> None:
    """A SIGKILLed sandbox (a closed terminal, a crashed script) does not leave anvil running."""
    log = tmp_path / "sandbox.txt"
    with log.open("w") as stderr:
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "x402_middleware.devchain.sandbox", "--port", "0"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        info = json.loads(_read_line(sandbox.stdout, 60))
        anvil = re.search(r"anvil pid (\d+)", log.read_text())
        assert anvil
        assert httpx.get(info["facilitator_url"] + "/health").status_code == 200
        sandbox.kill()
        sandbox.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{anvil.group(1)}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{anvil.group(1)}").exists()
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
            sandbox.wait()
        if sandbox.stdout is not None:
            sandbox.stdout.close()
