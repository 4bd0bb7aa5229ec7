"""Attacks on ``make dev`` (the paid gateway on the dev chain) from issue 14, judged on chain and at the upstream.

One dev gateway process for the module: anvil, the in-process OnChainFacilitator, the emulator, uvicorn.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from eth_account import Account

from tests._dev_gateway import DevGateway, dev_gateway
from x402_middleware import X402Auth

CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "attack"}], "max_tokens": 64}


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def _control(dev: DevGateway, method: str = "GET", rule: dict[str, Any] | None = None) -> Any:
    r = httpx.request(method, dev.info["emulator_url"] + "/_control", json=rule, timeout=10)
    r.raise_for_status()
    return r.json() if method == "GET" else None


def _upstream_calls(dev: DevGateway) -> int:
    return sum(row["count"] for row in _control(dev)["requests"])


def _sign(c: httpx.Client, key: str, body: dict[str, Any]) -> tuple[str, str]:
    challenge = c.post("/v1/chat/completions", json=body)
    assert challenge.status_code == 402
    signed = X402Auth(key)._pay(challenge.request, challenge)  # sign once, resend the same signature
    assert signed is not None
    return signed


def test_an_unfunded_signature_never_reaches_the_upstream(dev: DevGateway) -> None:
    empty = Account.create()
    _control(dev, "DELETE")
    pay_to_before = dev.balance_of(dev.info["pay_to"])
    answers = []
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        for stream in (False, True):
            body = {**CHAT, "stream": stream}
            name, value = _sign(c, empty.key.hex(), body)
            answers += [c.post("/v1/chat/completions", json=body, headers={name: value}) for _ in range(10)]
    assert [a.status_code for a in answers] == [402] * 20
    assert {a.json()["error"] for a in answers} == {"invalid_exact_evm_insufficient_balance"}
    assert {a.json()["code"] for a in answers} == {"PAYMENT_UNFUNDED"}
    assert _upstream_calls(dev) == 0 and dev.balance_of(dev.info["pay_to"]) == pay_to_before


def test_a_client_that_leaves_before_the_answer_is_not_charged(dev: DevGateway) -> None:
    key = dev.info["payer_private_keys"][2]
    payer = Account.from_key(key).address
    before = dev.balance_of(payer)
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        name, value = _sign(c, key, CHAT)
        _control(dev, "POST", {"fault": "timeout", "delay": 1.5, "model": "gpt-5.2", "times": 1})
        body = json.dumps(CHAT).encode()
        parts = urlsplit(dev.url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{name}: {value}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            time.sleep(0.5)  # the upstream is slow; the client gives up
        time.sleep(2.0)  # the upstream answered and the gateway started its 200 to nobody
        assert dev.balance_of(payer) == before
        retried = c.post("/v1/chat/completions", json=CHAT, headers={name: value})
    assert retried.status_code == 200 and dev.balance_of(payer) < before  # the same signature still pays, once


def test_forwarded_for_from_loopback_does_not_move_the_client(dev: DevGateway) -> None:
    statuses = []
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        for i in range(105):
            statuses.append(c.get("/v1/models", headers={"X-Forwarded-For": f"203.0.113.{i % 250}"}).status_code)
    assert statuses[:100] == [200] * 100 and statuses[100:] == [429] * 5  # one client: 127.0.0.1
    time.sleep(0.2)
    lines = [json.loads(line) for line in dev.output if line.startswith("{") and '"/v1/models"' in line]
    assert len(lines) >= 105 and {line["client"] for line in lines} == {"127.0.0.1"}
