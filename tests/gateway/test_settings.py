"""Operator settings: TOML file < environment < flags, masked ``--print-config``, clear errors, and a real process
configured by a file (paid, its rate limits and trusted proxies)."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.gateway import RateLimit
from examples.gateway.providers import BedrockConfig
from examples.gateway.settings import Settings, SettingsError, _JSONFormatter, load_settings
from tests._dev_gateway import clean_env
from tests._servers import ROOT

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
KEY = "0x" + "11" * 32
FILE = f"""
pay_to = "{PAY_TO}"
networks = ["eip155:84532"]
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
log_format = "text"
redis_url = "redis://user:hunter2@10.0.0.7:6379/0"

[facilitator]
url = "https://facilitator.example/x402"
token = "sekret-token-123"

[rate_limits]
catalog = {{limit = 2, window = 3600}}

[bedrock]
region = "eu-west-1"
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "aws-secret-in-the-file"
"""


def _file(tmp_path: Path, text: str = FILE) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = _file(tmp_path)
    env = {
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_HEALTH_RATE_LIMIT": "5/10",
        "GATEWAY_NETWORKS": "eip155:8453",
        "AWS_REGION": "us-east-2",
    }
    s = load_settings(path, env=env, flags={"networks": ["eip155:84532", "eip155:8453"], "port": None})
    assert s.pay_to == PAY_TO and s.facilitator_url == "https://facilitator.example/x402" and s.paid
    assert s.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert s.catalog_rate_limit == RateLimit(2, 3600.0) and s.health_rate_limit == RateLimit(5, 10.0)
    assert s.log_format == "json" and s.networks == ("eip155:84532", "eip155:8453")
    assert s.sources["pay_to"] == f"file {path}" and s.sources["log_format"] == "env GATEWAY_LOG_FORMAT"
    assert s.sources["networks"] == "flag" and s.sources["port"] == "default"
    # [bedrock] in the file, its region overridden by AWS_REGION: the Bedrock endpoint of us-east-2
    assert s.bedrock == BedrockConfig("us-east-2", "AKIAIOSFODNN7EXAMPLE", "aws-secret-in-the-file")
    assert s.bedrock.base_url == "https://bedrock-runtime.us-east-2.amazonaws.com"
    assert s.sources["bedrock_region"] == "env AWS_REGION" and s.sources["aws_access_key_id"] == f"file {path}"
    # GATEWAY_CONFIG names the file when no path is given; without either, the defaults.
    assert load_settings(env={"GATEWAY_CONFIG": str(path)}).pay_to == PAY_TO
    assert load_settings(env={}) == Settings()


def test_every_option_has_an_environment_variable() -> None:
    env = {
        "GATEWAY_CATALOG": str(ROOT / "examples/gateway/catalog.json"),
        "GATEWAY_PAY_TO": PAY_TO,
        "GATEWAY_NETWORKS": "eip155:84532",
        "GATEWAY_FACILITATOR_RPC_URL": "http://127.0.0.1:8545",
        "GATEWAY_FACILITATOR_KEYS": f"{KEY},{KEY}",
        "GATEWAY_CATALOG_RATE_LIMIT": "7/60",
        "GATEWAY_HEALTH_RATE_LIMIT": "8/60",
        "GATEWAY_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
        "GATEWAY_LOG_FORMAT": "text",
        "GATEWAY_LOG_LEVEL": "debug",
        "GATEWAY_HOST": "0.0.0.0",
        "GATEWAY_PORT": "9000",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/1",
        "AWS_REGION": "us-west-2",
        "AWS_ACCESS_KEY_ID": "ASIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-from-env",
        "AWS_SESSION_TOKEN": "aws-session-token-from-env",
        "BEDROCK_ENDPOINT_URL": "https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com",
        "GATEWAY_BILLING": "usage",
        "GATEWAY_FACILITATOR_ADDRESS": PAY_TO,
    }
    s = load_settings(env=env)
    assert s.billing == "usage" and s.facilitator_address == PAY_TO
    remote_only = ("facilitator_url", "facilitator_token")  # the other kind of facilitator, set by the test above
    assert all(source.startswith("env ") for key, source in s.sources.items() if key not in remote_only)
    assert s.facilitator_keys == (KEY, KEY) and s.paid and s.port == 9000 and s.trusted_proxies[1] == "10.0.0.2"
    masked = s.masked()
    assert masked["facilitator_keys"] == ["********", "********"] and KEY not in json.dumps(masked)
    assert s.bedrock is not None and s.bedrock.session_token == "aws-session-token-from-env"
    assert s.bedrock.base_url == "https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com"
    assert masked["aws_secret_access_key"] == masked["aws_session_token"] == "********"
    assert masked["aws_access_key_id"] == "********MPLE" and "from-env" not in json.dumps(masked)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('networks = ["eip155:999999999"]', {}, "networks"),
        ('trusted_proxies = ["proxy.local"]', {}, "not an IP address or CIDR"),
        ('colour = "red"', {}, "unknown key 'colour'"),
        ("[facilitator]\nurl = 'ftp://x'", {}, "http:// or https://"),
        (f"[facilitator]\nurl = 'https://f'\nrpc_url = 'https://r'\nprivate_keys = ['{KEY}']", {}, "not both"),
        (f"[facilitator]\nprivate_keys = ['{KEY}']", {}, "rpc_url"),
        ('pay_to = "0x123"', {}, "20-byte"),
        ('billing = "later"', {}, "exact, usage"),
        ("[facilitator]\naddress = '0x12'", {}, "20-byte"),
        ("", {"GATEWAY_CATALOG_RATE_LIMIT": "lots"}, "LIMIT/WINDOW_SECONDS"),
        ("port = 70000", {}, "port"),
        ("pay_to = [", {}, "not valid TOML"),
        ("[bedrock]\nregion = 'us-east-1'\naccess_key_id = 'AKIA1'", {}, "set both AWS_ACCESS_KEY_ID and AWS_SECRET"),
        ("", {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s"}, "AWS_REGION is not"),
        ("[bedrock]\nregion = 'mars-1'\naccess_key_id = 'AKIA1'\nsecret_access_key = 's'", {}, "not an AWS region"),
        ("[bedrock]\nendpoint_url = 'bedrock.local'", {}, "http:// or https://"),
        ("[bedrock]\nkey = 'x'", {}, r"unknown \[bedrock\] key 'key'"),
    ],
)
def test_errors_name_the_option_and_its_source(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(_file(tmp_path, text), env=env)


def test_json_log_lines() -> None:
    formatter = _JSONFormatter()
    request_line = logging.LogRecord("examples.gateway", logging.INFO, "", 0, '{"path":"/v1/models"}', None, None)
    other = logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, "Started %s", ("server",), None)
    assert formatter.format(request_line) == '{"path":"/v1/models"}'
    assert json.loads(formatter.format(other)) == {
        "level": "warning",
        "logger": "uvicorn.error",
        "message": "Started server",
    }


def test_print_config_masks_secrets(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.gateway", "--config", str(_file(tmp_path)), "--print-config", "--port", "9"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    shown = json.loads(out)
    assert "sekret-token-123" not in out and "hunter2" not in out and "aws-secret-in-the-file" not in out
    assert shown["aws_secret_access_key"] == "********" and shown["bedrock_region"] == "eu-west-1"
    assert shown["facilitator_token"] == "********" and shown["redis_url"] == "redis://user:********@10.0.0.7:6379/0"
    assert shown["port"] == 9 and shown["sources"]["port"] == "flag" and shown["paid"] is True


def test_a_bad_setting_exits_with_the_reason(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "examples.gateway", "--config", str(_file(tmp_path, 'log_format = "xml"'))],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "log_format (from file" in run.stderr and "json, text" in run.stderr


@contextmanager
def _serve(config: Path) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.gateway", "--config", str(config), "--port", "0"],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
        reader.start()
        reader.join(60)
        assert box and box[0].strip(), f"the gateway did not start (exit {proc.poll()})"
        yield json.loads(box[0])
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(15)


def test_a_gateway_configured_by_a_file(tmp_path: Path) -> None:
    with _serve(_file(tmp_path)) as info, httpx.Client(base_url=info["url"], timeout=10) as c:
        assert info["paid"] is True
        chat = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        r = c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 402
        required = json.loads(base64.b64decode(r.headers["payment-required"]))
        assert required["accepts"][0]["payTo"] == PAY_TO and required["accepts"][0]["network"] == "eip155:84532"
        # catalog limit 2/hour from the file; X-Forwarded-For believed from 127.0.0.1 (a trusted proxy) only.
        assert [c.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.1"}).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert c.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200


def test_the_dev_mode_reads_the_same_file(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.gateway.dev", "--config", str(_file(tmp_path)), "--print-config"],
        cwd=ROOT,
        env=clean_env(GATEWAY_LOG_LEVEL="warning"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    shown = json.loads(out)
    assert shown["catalog_rate_limit"] == {"limit": 2, "window": 3600.0} and shown["log_level"] == "warning"
    assert shown["sources"]["log_level"] == "env GATEWAY_LOG_LEVEL" and shown["trusted_proxies"][1] == "10.0.0.0/8"


@pytest.mark.anyio
async def test_the_worker_factory_builds_the_paid_app(tmp_path: Path) -> None:
    from examples.gateway.production import build_app

    app = build_app(load_settings(_file(tmp_path), env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        r = await c.post("/v1/images/generations", json={"model": "openai/gpt-image-1", "prompt": "a cat"})
    assert r.status_code == 402
    assert json.loads(base64.b64decode(r.headers["payment-required"]))["resource"]["description"] == (
        "GPT Image 1: 1 image(s) 1024x1024 medium"
    )
    await app.state.gateway.aclose()
