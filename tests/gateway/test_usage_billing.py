"""Usage billing end to end: ``python -m examples.gateway.dev --billing usage`` as a real process on the dev chain.

Callers sign x402 ``upto`` (Permit2) for the quote; the gateway settles what the upstream (the emulator, in each
provider's wire format) reported it used. Every assertion on money reads balances from anvil.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from examples.gateway.catalog import load_catalog
from examples.gateway.quote import usage_price
from tests._dev_gateway import DevGateway, dev_gateway
from x402_middleware.devchain._rpc import SyncRPC
from x402_middleware.devchain.chain import PERMIT2_ADDRESS
from x402_middleware.evm.abi import encode_call
from x402_middleware.models import parse_requirements
from x402_middleware.schemes import find_scheme

CATALOG = load_catalog()
CHAT = "/v1/chat/completions"
MODELS = ("openai/gpt-5.2", "openai/gpt-4o-mini", "anthropic/claude-opus-4.7", "google/gemini-2.5-pro")


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway("--billing", "usage", "--no-solana", "--payers", "5") as gw:
        yield gw


def _decode(value: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(value))  # type: ignore[no-any-return]


def _key(dev: DevGateway, i: int) -> tuple[str, str]:
    key = dev.info["payer_private_keys"][i]
    return key, Account.from_key(key).address


def _sign_upto(challenge: httpx.Response, key: str) -> tuple[str, int]:
    """The ``PAYMENT-SIGNATURE`` for the challenge's ``upto`` offer, and the maximum it signs."""
    required = _decode(challenge.headers["payment-required"])
    offer = next(a for a in required["accepts"] if a["scheme"] == "upto")
    scheme = find_scheme("upto", "eip155")
    assert scheme is not None
    inner = scheme.sign(parse_requirements(offer, 2), bytes.fromhex(key[2:]), int(time.time()))
    wire = {"x402Version": 2, "resource": required["resource"], "accepted": offer, "payload": inner}
    return base64.b64encode(json.dumps(wire).encode()).decode(), int(offer["amount"])


def _paid(c: httpx.Client, path: str, body: dict[str, Any], key: str) -> tuple[httpx.Response, int]:
    challenge = c.post(path, json=body)
    assert challenge.status_code == 402, challenge.text
    header, maximum = _sign_upto(challenge, key)
    return c.post(path, json=body, headers={"PAYMENT-SIGNATURE": header}), maximum


def _cost(model: str, usage: dict[str, Any]) -> int:
    cost = usage_price(CATALOG.models[model], usage["prompt_tokens"], usage["completion_tokens"])
    assert cost is not None
    return cost


def test_the_json_line_and_the_402_say_usage_billing(dev: DevGateway) -> None:
    assert dev.info["billing"] == "usage"
    with httpx.Client(base_url=dev.url) as c:
        r = c.post(CHAT, json={"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}]})
    accepts = _decode(r.headers["payment-required"])["accepts"]
    assert [a["scheme"] for a in accepts] == ["exact", "upto"]  # exact first: BlockRun's clients take accepts[0]
    assert accepts[0]["amount"] == accepts[1]["amount"]  # the quote is the upto maximum
    address = accepts[1]["extra"]["facilitatorAddress"]  # the dev facilitator's, which settles it
    assert address.startswith("0x") and len(address) == 42


def test_a_hundred_calls_are_charged_exactly_their_usage(dev: DevGateway) -> None:
    key, payer = _key(dev, 0)
    before = dev.balance_of(payer), dev.balance_of(dev.info["pay_to"])
    costs: list[int] = []
    maxima: list[int] = []
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        for i in range(100):
            model = MODELS[i % len(MODELS)]
            words = " ".join(f"w{j}" for j in range(i % 17 + 1))
            body = {"model": model, "messages": [{"role": "user", "content": words}], "max_tokens": 200 + 37 * i}
            r, maximum = _paid(c, CHAT, body, key)
            assert r.status_code == 200, r.text
            cost = _cost(model, r.json()["usage"])
            settled = _decode(r.headers["payment-response"])
            assert settled["success"] is True and int(settled["amount"]) == cost <= maximum
            costs.append(cost)
            maxima.append(maximum)
    spent = before[0] - dev.balance_of(payer)
    assert spent == sum(costs) == dev.balance_of(dev.info["pay_to"]) - before[1]
    assert sum(costs) < sum(maxima)  # usage billing charged less than the quotes


def test_a_call_with_no_output_tokens_pays_for_its_input(dev: DevGateway) -> None:
    key, payer = _key(dev, 1)
    before = dev.balance_of(payer)
    body = {"model": MODELS[0], "messages": [{"role": "user", "content": "say nothing"}], "stop": ["Echo"]}
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        r, _ = _paid(c, CHAT, body, key)
    usage = r.json()["usage"]
    assert r.status_code == 200 and usage["completion_tokens"] == 0
    assert before - dev.balance_of(payer) == _cost(MODELS[0], usage) == 2000  # the $0.001 floor + the $0.001 fee


def _stream_usage(lines: list[str], api: str) -> dict[str, int]:
    """The usage a stream reported: OpenAI's usage chunk, or Anthropic's message_start + message_delta."""
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]
    if api == "openai":
        (usage,) = [e["usage"] for e in events if e.get("usage")]
        return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}
    start = next(e["message"]["usage"] for e in events if e.get("type") == "message_start")
    delta = [e["usage"] for e in events if e.get("type") == "message_delta"][-1]
    return {"prompt_tokens": start["input_tokens"], "completion_tokens": delta["output_tokens"]}


@pytest.mark.parametrize(
    ("path", "model", "extra", "api"),
    [
        (CHAT, "openai/gpt-5.2", {"stream_options": {"include_usage": True}}, "openai"),
        (CHAT, "openai/gpt-5.2", {}, "openai"),  # usage asked of the upstream anyway, on the finish chunk
        (CHAT, "google/gemini-2.5-pro", {"stream_options": {"include_usage": True}}, "openai"),  # usageMetadata
        ("/v1/messages", "anthropic/claude-opus-4.7", {}, "anthropic"),  # message_delta usage
    ],
)
def test_a_stream_is_charged_its_final_usage(
    dev: DevGateway, path: str, model: str, extra: dict[str, Any], api: str
) -> None:
    key, payer = _key(dev, 2)
    before = dev.balance_of(payer)
    body = {"model": model, "messages": [{"role": "user", "content": "stream me a few words"}], "max_tokens": 300}
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        challenge = c.post(path, json={**body, "stream": True, **extra})
        header, maximum = _sign_upto(challenge, key)
        with c.stream("POST", path, json={**body, "stream": True, **extra}, headers={"PAYMENT-SIGNATURE": header}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert "payment-response" not in r.headers  # the charge is known at the end of the stream
            lines = [line for line in r.iter_lines() if line]
    cost = _cost(model, _stream_usage(lines, api))
    deadline = time.monotonic() + 10
    while before - dev.balance_of(payer) != cost and time.monotonic() < deadline:
        time.sleep(0.05)  # settled once the response went out in full
    assert before - dev.balance_of(payer) == cost <= maximum


def test_a_failed_upstream_call_is_never_settled(dev: DevGateway) -> None:
    key, payer = _key(dev, 1)
    before = dev.balance_of(payer)
    body = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "fail"}]}
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        c.post(dev.info["emulator_url"] + "/_control", json={"fault": "500", "model": "gpt-5.2"}).raise_for_status()
        try:
            r, _ = _paid(c, CHAT, body, key)
        finally:
            c.delete(dev.info["emulator_url"] + "/_control")
    assert r.status_code >= 500 and "payment-response" not in r.headers
    assert dev.balance_of(payer) == before


def _approve_permit2(dev: DevGateway, owner: str, amount: int) -> None:
    """``owner`` approves Permit2 for ``amount`` on the dev gateway's chain (anvil lends the gas)."""
    rpc = SyncRPC(dev.info["rpc_url"])
    try:
        rpc("anvil_setBalance", owner, hex(10**18))
        rpc("anvil_impersonateAccount", owner)
        data = "0x" + encode_call("approve(address,uint256)", PERMIT2_ADDRESS, amount).hex()
        tx = rpc("eth_sendTransaction", {"from": owner, "to": dev.info["asset"], "data": data})
        for _ in range(100):
            if rpc("eth_getTransactionReceipt", tx) is not None:
                break
            time.sleep(0.05)
        rpc("anvil_stopImpersonatingAccount", owner)
        rpc("anvil_setBalance", owner, "0x0")
    finally:
        rpc.close()


def _metric(text: str, name: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(name + "{"))


def _revoked_while_upstream_works(dev: DevGateway, i: int, body: dict[str, Any]) -> tuple[httpx.Response, str, str]:
    """A paid call during which the payer revokes its Permit2 allowance (after verify, before settle)."""
    key, payer = _key(dev, i)
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        header, _ = _sign_upto(c.post(CHAT, json=body), key)
        rule = {"fault": "slow-first-byte", "delay": 1.5, "model": "gpt-5.2"}
        c.post(dev.info["emulator_url"] + "/_control", json=rule).raise_for_status()
        box: list[httpx.Response] = []

        def call() -> None:
            r = c.post(CHAT, json=body, headers={"PAYMENT-SIGNATURE": header})
            r.read()
            box.append(r)

        thread = threading.Thread(target=call)
        try:
            thread.start()
            time.sleep(0.7)  # verified (balance, allowance, a simulation of the maximum) and waiting on the upstream
            _approve_permit2(dev, payer, 0)
            thread.join(30)
        finally:
            c.delete(dev.info["emulator_url"] + "/_control")
    return box[0], header, payer


def test_an_allowance_revoked_during_a_stream_is_a_counted_loss_never_retried(dev: DevGateway) -> None:
    _, payer = _key(dev, 3)
    before = dev.balance_of(payer)
    body = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "slow one"}], "stream": True}
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        lost_before = _metric(c.get("/metrics").text, "gateway_payments_lost_total")
    try:
        served, header, payer = _revoked_while_upstream_works(dev, 3, body)
        assert served.status_code == 200 and served.text.rstrip().endswith("data: [DONE]")  # the content went out
        with httpx.Client(base_url=dev.url, timeout=30) as c:
            time.sleep(0.3)  # the settlement runs once the response went out in full
            metrics = c.get("/metrics").text
            assert _metric(metrics, "gateway_payments_lost_total") == lost_before + 1
            assert _metric(metrics, "gateway_lost_atomic_total") > 0
            again = c.post(CHAT, json=body, headers={"PAYMENT-SIGNATURE": header})
            assert again.status_code == 402  # the refused payment is never served or settled again
            time.sleep(0.3)
            assert _metric(c.get("/metrics").text, "gateway_payments_lost_total") == lost_before + 1
        assert dev.balance_of(payer) == before  # served, never paid: the operator's loss
    finally:
        _approve_permit2(dev, payer, 2**256 - 1)


def test_an_allowance_revoked_during_a_whole_response_answers_402_instead(dev: DevGateway) -> None:
    _, payer = _key(dev, 4)
    before = dev.balance_of(payer)
    body = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "slow one"}]}
    try:
        refused, _, payer = _revoked_while_upstream_works(dev, 4, body)
        assert refused.status_code == 402 and "Echo" not in refused.text  # settled before sending: nothing leaked
        assert dev.balance_of(payer) == before
    finally:
        _approve_permit2(dev, payer, 2**256 - 1)
