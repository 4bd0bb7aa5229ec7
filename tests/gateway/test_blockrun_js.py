"""BlockRun's TypeScript SDK (npm ``@blockrun/llm``, pinned in package.json), unmodified, against ``make dev``.

``tests/gateway/js/blockrun_sdk.mjs`` runs under node once per module with ``HOME`` = a temp dir and no
``BLOCKRUN_API_KEY`` (blockrun-clients.md §4): paid chat, streaming (including the stream pre-auth cache, which pays
on the first request with no 402 before it), model listing, the ``OpenAI`` and ``AnthropicClient`` wrappers and a
throttled model. It records every HTTP exchange, so each settlement can be matched to the body it paid for; the
expected prices are the gateway's own quotes (unpaid requests) and the balances are read back from the dev chain.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests._dev_gateway import DevGateway, clean_env, dev_gateway
from tests._servers import ROOT

SCRIPT = ROOT / "tests" / "gateway" / "js" / "blockrun_sdk.mjs"
CHAT_MODEL, THROTTLED_MODEL, THROTTLED_UPSTREAM, RETRY_AFTER = (
    "openai/gpt-5.2",
    "openai/gpt-5.4-mini",
    "gpt-5.4-mini",
    7,
)


def _call(model: str, content: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}


# Different max_tokens give different quotes, so every settled amount pins down the call it paid for.
CALLS = {
    "chat": _call(CHAT_MODEL, "Hello from @blockrun/llm", 1500),
    "one_liner": _call(CHAT_MODEL, "One line, please", 2500),
    "stream": _call(CHAT_MODEL, "Stream this back to me", 3000),
    "stream_other": _call(CHAT_MODEL, "A pricier stream", 6000),
    "openai": _call(CHAT_MODEL, "Through the OpenAI wrapper", 1200),
    "messages": _call("anthropic/claude-sonnet-4.6", "Through AnthropicClient", 700),
    "throttled": _call(THROTTLED_MODEL, "Are you busy?", 900),
}


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway("--payers", "1") as gw:
        yield gw


@pytest.fixture(scope="module")
def run(dev: DevGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed (it also runs anvil's npm package)"
    assert (ROOT / "node_modules" / "@blockrun" / "llm").is_dir(), "run `npm ci`: @blockrun/llm is a devDependency"
    work = tmp_path_factory.mktemp("blockrun-js")
    (work / "home").mkdir()
    payer, pay_to = dev.info["payer_addresses"][0], dev.info["pay_to"]
    (work / "config.json").write_text(
        json.dumps({"api_url": dev.info["api_url"], "key": dev.info["payer_private_keys"][0], **CALLS})
    )
    before = dev.balance_of(payer), dev.balance_of(pay_to)
    httpx.post(
        dev.info["emulator_url"] + "/_control",
        json={"fault": "429", "model": THROTTLED_UPSTREAM, "retry_after": RETRY_AFTER},
    ).raise_for_status()
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [node, str(SCRIPT), str(work / "config.json"), str(work / "out.json")],
            cwd=work,
            env=clean_env(HOME=str(work / "home")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,  # its exit code is asserted below, with its stderr
        )
        upstream = httpx.get(dev.info["emulator_url"] + "/_control").json()
    finally:
        httpx.delete(dev.info["emulator_url"] + "/_control")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads((work / "out.json").read_text())
    out["wall_seconds"] = round(time.perf_counter() - started, 2)
    out["payer"], out["upstream"] = payer, upstream
    out["spent"], out["received"] = before[0] - dev.balance_of(payer), dev.balance_of(pay_to) - before[1]
    print(f"@blockrun/llm {out['version']}: calls {out['seconds']} s, node process {out['wall_seconds']} s")
    return out


def _quote(dev: DevGateway, url: str, body: dict[str, Any]) -> int:
    """What the gateway asks for this body: the amount of its 402 to an unpaid request."""
    r = httpx.post(url, json=body, timeout=10)
    assert r.status_code == 402, r.text
    return int(json.loads(base64.b64decode(r.headers["payment-required"]))["accepts"][0]["amount"])


def _settled(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for v in run.values() if isinstance(v, dict) for e in v.get("exchanges", []) if "settlement" in e]


def _ok(run: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = run[name]
    assert "error" not in result, result
    return result


def _flow(result: dict[str, Any]) -> list[tuple[bool, int]]:
    return [(e["paid"], e["status"]) for e in result["exchanges"]]


def test_paid_chat_settles_each_quote_once_on_chain(run: dict[str, Any], dev: DevGateway) -> None:
    assert _ok(run, "chat")["text"] == "Echo (gpt-5.2): One line, please"
    completion = _ok(run, "chat_completion")
    assert completion["text"] == "Echo (gpt-5.2): Hello from @blockrun/llm" and completion["model"] == CHAT_MODEL
    assert isinstance(completion["created"], int)
    assert _flow(run["chat"]) == _flow(completion) == [(False, 402), (True, 200)]
    settled = _settled(run)
    assert len(settled) == 8  # chat, chat_completion, 3 streams, 2 OpenAI wrapper calls, Anthropic; not the 429s
    for e in settled:
        s = e["settlement"]
        assert s["success"] and s["payer"] == run["payer"] and s["network"] == "eip155:8453"
        assert dev.receipt_status(s["transaction"]) == 1
        assert int(e["accepted"]["amount"]) == _quote(dev, e["url"], e["body"])  # paid exactly the quote of its body
    assert len({e["settlement"]["transaction"] for e in settled}) == len(settled)
    total = sum(int(e["accepted"]["amount"]) for e in settled)
    assert run["spent"] == run["received"] == total


def test_streaming_chat_and_pre_auth(run: dict[str, Any], dev: DevGateway) -> None:
    first, preauth, requote = _ok(run, "stream_first"), _ok(run, "stream_preauth"), _ok(run, "stream_requote")
    for r, content in (
        (first, "Stream this back to me"),
        (preauth, "Stream this back to me"),
        (requote, "A pricier stream"),
    ):
        assert r["status"] == 200 and r["contentType"].startswith("text/event-stream")
        assert r["text"] == f"Echo (gpt-5.2): {content}" and r["last"] == "data: [DONE]"
    assert _flow(first) == [(False, 402), (True, 200)]
    # Pre-auth: the cached requirements are signed and sent on the first request; the gateway accepts a valid
    # payment that no 402 preceded, and settles it (once: its own transaction).
    assert _flow(preauth) == [(True, 200)]
    [paid] = preauth["exchanges"]
    assert (
        paid["settlement"]["success"]
        and paid["settlement"]["transaction"] != first["exchanges"][1]["settlement"]["transaction"]
    )
    # A pricier body underpays with the cached requirements: 402 (not 400), so the SDK drops its cache and re-probes.
    assert _flow(requote) == [(True, 402), (False, 402), (True, 200)]
    stale, _, repaid = requote["exchanges"]
    assert "settlement" not in stale and int(stale["accepted"]["amount"]) < int(repaid["accepted"]["amount"])
    streams = [first["exchanges"][1], paid, repaid]
    assert run["spending"]["calls"] == 5  # LLMClient: chat, chat_completion and the three streams
    paid_by_client = streams + [run["chat"]["exchanges"][1], run["chat_completion"]["exchanges"][1]]
    assert run["spending"]["totalUsd"] == pytest.approx(sum(int(e["accepted"]["amount"]) for e in paid_by_client) / 1e6)


def test_model_listing_matches_the_gateway_catalog(run: dict[str, Any], dev: DevGateway) -> None:
    listed = [m["id"] for m in httpx.get(dev.url + "/api/v1/models", timeout=10).json()["data"]]
    assert _ok(run, "models")["ids"] == listed and len(listed) == dev.info["models"]


def test_rate_limited_model_is_an_api_error_429_and_never_charged(run: dict[str, Any]) -> None:
    paid, probe = run["throttled_paid"], run["throttled_probe"]
    for r in (paid, probe):
        err = r["error"]
        assert err["name"] == "APIError" and err["statusCode"] == 429 and err["response"]["code"] == "RATE_LIMITED"
        assert "retry after" in err["response"]["detail"]  # TS keeps our top-level message as ``detail``
    assert _flow(paid) == [(False, 402), (True, 429)]  # signed, reached the throttled upstream, not settled
    assert _flow(probe) == [(False, 429)]  # known throttled: 429 on the unpaid probe, before any 402
    assert not any("settlement" in e for e in paid["exchanges"] + probe["exchanges"])
    calls = {r["model"]: r["count"] for r in run["upstream"]["requests"]}
    assert calls[THROTTLED_UPSTREAM] == 1


def test_openai_and_anthropic_wrappers(run: dict[str, Any]) -> None:
    assert _ok(run, "openai") == {
        "text": "Echo (gpt-5.2): Through the OpenAI wrapper",
        "object": "chat.completion",
        "exchanges": run["openai"]["exchanges"],
    }
    stream = _ok(run, "openai_stream")
    assert stream["text"] == "Echo (gpt-5.2): Through the OpenAI wrapper" and stream["chunks"] > 2
    anthropic = _ok(run, "anthropic")
    assert (anthropic["type"], anthropic["role"], anthropic["stop_reason"]) == ("message", "assistant", "end_turn")
    assert "Through AnthropicClient" in anthropic["text"]
    assert [e["url"].rsplit("/api", 1)[1] for e in anthropic["exchanges"]] == ["/v1/messages"] * 2
    assert _flow(anthropic) == _flow(run["openai"]) == _flow(stream) == [(False, 402), (True, 200)]
