"""BlockRun's own Python SDK (PyPI ``blockrun-llm``, pinned in the ``test`` extra), unmodified, against ``make dev``.

The SDK runs in one child process -- this module run as a script, ``python -m tests.gateway.test_blockrun_python
CONFIG OUT`` -- because it reads ``.env`` and fixes its ``~/.blockrun`` paths at import, writes a cost log there, and
switches to its API-key rail when ``BLOCKRUN_API_KEY`` is set (blockrun-clients.md §4). So the child gets ``HOME`` =
a temp dir, a temp working directory and no provider or BlockRun keys. It runs every scenario once, each with its
own funded payer, and writes what it saw as one JSON object; the tests assert on that and on the USDC balances read
back from the dev chain, and compute every expected price by asking the gateway for its quote (an unpaid request).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from tests._dev_gateway import DevGateway, clean_env, dev_gateway
from tests._servers import ROOT
from x402_middleware import X402Auth

CHAT_MODEL = "openai/gpt-5.2"
#: Only the rate-limit scenario uses this model: the gateway remembers it as throttled for ``RETRY_AFTER`` seconds.
THROTTLED_MODEL, THROTTLED_UPSTREAM, RETRY_AFTER = "openai/gpt-5.4-mini", "gpt-5.4-mini", 7
CLAUDE = "anthropic/claude-sonnet-4.6"
# Different max_tokens per call give different quotes, so a balance change pins down which calls were charged.
CHAT: dict[str, Any] = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Hello from blockrun-llm"}],
    "max_tokens": 1500,
}
ONE_LINER: dict[str, Any] = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "One line, please"}],
    "max_tokens": 2500,
}
STREAM: dict[str, Any] = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Stream this back to me"}],
    "max_tokens": 3000,
}
LIMITED: dict[str, Any] = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Within my budget"}],
    "max_tokens": 2000,
}
THROTTLED: dict[str, Any] = {
    "model": THROTTLED_MODEL,
    "messages": [{"role": "user", "content": "Are you busy?"}],
    "max_tokens": 900,
}
FALLBACK: dict[str, Any] = {**THROTTLED, "max_tokens": 3500}  # served by CHAT_MODEL after the throttled model's 429
MESSAGES: dict[str, Any] = {
    "model": CLAUDE,
    "messages": [{"role": "user", "content": "Hello from the Anthropic client"}],
    "max_tokens": 700,
}
ASYNC_CHAT: dict[str, Any] = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Hello from the async client"}],
    "max_tokens": 1200,
}
IMAGE: dict[str, Any] = {
    "model": "google/nano-banana",
    "prompt": "A lighthouse from blockrun-llm",
    "size": "1024x1024",
    "n": 1,
}
MUSIC: dict[str, Any] = {"model": "elevenlabs/music-v1", "prompt": "A jingle from blockrun-llm", "instrumental": True}
VIDEO: dict[str, Any] = {"model": "openai/sora-2", "prompt": "A paper boat from blockrun-llm", "duration_seconds": 4}
PAYERS = ("chat", "stream", "limits", "rate_limit", "anthropic", "async", "media")
RAW_PAYER = len(PAYERS)  # one more funded payer, for the raw HTTP checks of what the SDK reads


# -- the child: the SDK, used as its README shows -----------------------------------------------------------------------
def _run_sdk(api_url: str, keys: dict[str, str]) -> dict[str, Any]:
    import blockrun_llm as br

    def attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except (br.PaymentError, br.APIError) as exc:  # the SDK's refusals (SpendLimitError is a PaymentError):
            return {"error": _describe(exc, br)}  # recorded, and asserted on by the tests

    def chat() -> dict[str, Any]:
        with br.LLMClient(private_key=keys["chat"], api_url=api_url) as client:
            r = client.chat_completion(CHAT["model"], CHAT["messages"], max_tokens=CHAT["max_tokens"])
            settlement = r.settlement or {}
            # The same wallet through ``localhost``: the 402's resource.url must follow the Host the client used.
            with br.LLMClient(private_key=keys["chat"], api_url=api_url.replace("127.0.0.1", "localhost")) as local:
                text = local.chat(
                    ONE_LINER["model"], ONE_LINER["messages"][0]["content"], max_tokens=ONE_LINER["max_tokens"]
                )
            return {
                "content": r.choices[0].message.content,
                "model": r.model,
                "cost_usd": r.cost_usd,
                "tx": settlement.get("tx_hash"),
                "amount": settlement.get("amount_micro_usdc"),
                "payer": settlement.get("payer"),
                "one_liner": text,
                "spending": client.get_spending(),
            }

    def stream() -> dict[str, Any]:
        with br.LLMClient(private_key=keys["stream"], api_url=api_url) as client:
            chunks = list(
                client.chat_completion_stream(STREAM["model"], STREAM["messages"], max_tokens=STREAM["max_tokens"])
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return {
                "chunks": len(chunks),
                "content": text,
                "cost_usd": [c.cost_usd for c in chunks][-1],
                "finish": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
                "spending": client.get_spending(),
            }

    def models() -> dict[str, Any]:
        with br.LLMClient(private_key=keys["chat"], api_url=api_url) as client:
            listed = client.list_models()
        return {
            "client": [m["id"] for m in listed],
            "pricing": [m["id"] for m in br.list_models(api_url)],
            "paid_rows": [m for m in listed if m["id"] == CHAT_MODEL],
        }

    def limits() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with br.LLMClient(private_key=keys["limits"], api_url=api_url, max_cost_per_call=0.001) as client:
            out["per_call"] = attempt(
                lambda: {
                    "content": client.chat(
                        LIMITED["model"], LIMITED["messages"][0]["content"], max_tokens=LIMITED["max_tokens"]
                    )
                }
            )
        with br.LLMClient(private_key=keys["limits"], api_url=api_url, max_session_cost=0.0055) as client:
            out["session"] = [
                attempt(
                    lambda: {
                        "content": client.chat(
                            LIMITED["model"], LIMITED["messages"][0]["content"], max_tokens=LIMITED["max_tokens"]
                        )
                    }
                )
                for _ in range(2)
            ]
            out["spending"] = client.get_spending()
        return out

    def rate_limit() -> dict[str, Any]:
        with br.LLMClient(private_key=keys["rate_limit"], api_url=api_url) as client:

            def once() -> dict[str, Any]:
                return {
                    "content": client.chat(
                        THROTTLED["model"], THROTTLED["messages"][0]["content"], max_tokens=THROTTLED["max_tokens"]
                    )
                }

            paid, probe = attempt(once), attempt(once)
            r = client.chat_completion(
                FALLBACK["model"], FALLBACK["messages"], max_tokens=FALLBACK["max_tokens"], fallback_models=[CHAT_MODEL]
            )
            return {
                "paid": paid,
                "probe": probe,
                "fallback": {"model": r.model, "cost_usd": r.cost_usd, "content": r.choices[0].message.content},
            }

    def anthropic() -> dict[str, Any]:
        client = br.AnthropicClient(private_key=keys["anthropic"], api_url=api_url)
        r = client.messages.create(
            model=MESSAGES["model"], max_tokens=MESSAGES["max_tokens"], messages=MESSAGES["messages"]
        )
        return {"type": r.type, "role": r.role, "text": r.content[0].text, "stop_reason": r.stop_reason}

    def async_chat() -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with br.AsyncLLMClient(private_key=keys["async"], api_url=api_url) as client:
                r = await client.chat_completion(
                    ASYNC_CHAT["model"], ASYNC_CHAT["messages"], max_tokens=ASYNC_CHAT["max_tokens"]
                )
                return {"content": r.choices[0].message.content, "cost_usd": r.cost_usd}

        return asyncio.run(go())

    def media() -> dict[str, Any]:
        # The SDK's own media clients: images (default model google/nano-banana), music, and an async video job
        # (submit, then polls of its poll_url with the same PAYMENT-SIGNATURE until completed).
        with br.ImageClient(private_key=keys["media"], api_url=api_url) as images:
            image = images.generate(IMAGE["prompt"], model=IMAGE["model"], size=IMAGE["size"], n=IMAGE["n"])
        with br.MusicClient(private_key=keys["media"], api_url=api_url) as music:
            track = music.generate(MUSIC["prompt"], model=MUSIC["model"])
        with br.VideoClient(private_key=keys["media"], api_url=api_url) as videos:
            videos.POLL_INTERVAL_SECONDS = 0.2  # the emulator's job takes 0.5 s, not minutes
            video = videos.generate(VIDEO["prompt"], model=VIDEO["model"], duration_seconds=VIDEO["duration_seconds"])
        return {
            "image": [d.url[:22] for d in image.data],
            "track": {"url": track.data[0].url[:22], "model": track.model},
            "video": {"url": video.data[0].url, "model": video.model},
        }

    def unfunded() -> dict[str, Any]:
        with br.LLMClient(private_key=Account.create().key.hex(), api_url=api_url) as client:
            return {"content": client.chat(CHAT["model"], "I have no USDC", max_tokens=100)}

    out: dict[str, Any] = {"seconds": {}}
    for name, fn in [
        ("chat", chat),
        ("stream", stream),
        ("models", models),
        ("limits", limits),
        ("rate_limit", rate_limit),
        ("anthropic", anthropic),
        ("async", async_chat),
        ("media", media),
        ("unfunded", unfunded),
    ]:
        started = time.perf_counter()
        try:
            out[name] = attempt(fn)
        # Any other failure of one scenario (httpx, anthropic, pydantic, a bug) is recorded for that scenario's own
        # test to report, and the other scenarios still run: catching every type is the point here.
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": _describe(exc, br)}
        out["seconds"][name] = round(time.perf_counter() - started, 2)
    out["version"] = br.__version__
    return out


def _describe(exc: BaseException, br: Any) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "is_payment_error": isinstance(exc, br.PaymentError),
        "is_api_error": isinstance(exc, br.APIError),
        **{
            k: getattr(exc, k)
            for k in ("status_code", "retry_after", "response", "quoted_usd", "limit_usd", "scope")
            if hasattr(exc, k)
        },
        **({"retry_after_seconds": exc.retry_after_seconds} if hasattr(exc, "retry_after_seconds") else {}),
    }


# -- the tests ------------------------------------------------------------------------------------------------------------
def _control(dev: DevGateway, method: str, **rule: Any) -> Any:
    r = httpx.request(method, dev.info["emulator_url"] + "/_control", json=rule or None, timeout=10)
    r.raise_for_status()
    return r.json() if r.content else None


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway("--payers", str(len(PAYERS) + 1)) as gw:
        yield gw


@pytest.fixture(scope="module")
def run(dev: DevGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the SDK once against the dev gateway; balances of every payer and the payee before and after."""
    work = tmp_path_factory.mktemp("blockrun-py")
    (work / "home").mkdir()
    keys = dict(zip(PAYERS, dev.info["payer_private_keys"], strict=False))
    addresses = dict(zip(PAYERS, dev.info["payer_addresses"], strict=False)) | {"pay_to": dev.info["pay_to"]}
    before = {name: dev.balance_of(a) for name, a in addresses.items()}
    (work / "config.json").write_text(json.dumps({"api_url": dev.info["api_url"], "keys": keys}))
    _control(dev, "POST", fault="429", model=THROTTLED_UPSTREAM, retry_after=RETRY_AFTER)
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.gateway.test_blockrun_python",
                str(work / "config.json"),
                str(work / "out.json"),
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=100,
            env=clean_env(HOME=str(work / "home"), PYTHONPATH=str(ROOT)),
            check=False,  # its exit code is asserted below, with its stderr
        )
        upstream = _control(dev, "GET")
    finally:
        _control(dev, "DELETE")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads((work / "out.json").read_text())
    out["wall_seconds"] = round(time.perf_counter() - started, 2)
    out["before"], out["after"] = before, {name: dev.balance_of(a) for name, a in addresses.items()}
    out["addresses"], out["upstream"], out["home"], out["stderr"] = addresses, upstream, str(work / "home"), proc.stderr
    print(f"blockrun-llm {out['version']}: child process {out['wall_seconds']} s, scenarios {out['seconds']}")
    return out


def _quote(dev: DevGateway, body: dict[str, Any], path: str = "/api/v1/chat/completions") -> int:
    """What the gateway asks for this body: the amount of its 402 to an unpaid request."""
    r = httpx.post(dev.url + path, json=body, timeout=10)
    assert r.status_code == 402, r.text
    return int(json.loads(base64.b64decode(r.headers["payment-required"]))["accepts"][0]["amount"])


def _spent(run: dict[str, Any], payer: str) -> int:
    return int(run["before"][payer]) - int(run["after"][payer])


def test_paid_chat_is_charged_exactly_the_quotes_on_chain(run: dict[str, Any], dev: DevGateway) -> None:
    chat = run["chat"]
    assert "error" not in chat, chat
    assert chat["content"] == "Echo (gpt-5.2): Hello from blockrun-llm" and chat["model"] == CHAT_MODEL
    assert chat["one_liner"] == "Echo (gpt-5.2): One line, please"  # chat() through http://localhost:PORT/api
    quote, one_liner = _quote(dev, CHAT), _quote(dev, ONE_LINER)
    assert quote != one_liner
    # The SDK books the signed amount and decodes our PAYMENT-RESPONSE (tx, payer, amount).
    assert chat["cost_usd"] == pytest.approx(quote / 1e6) and int(chat["amount"]) == quote
    assert chat["payer"] == run["addresses"]["chat"] and dev.receipt_status(chat["tx"]) == 1
    assert chat["spending"]["calls"] == 1  # the client that made one call
    assert _spent(run, "chat") == quote + one_liner


def test_streaming_chat_is_assembled_and_settled_once(run: dict[str, Any], dev: DevGateway) -> None:
    stream = run["stream"]
    assert "error" not in stream, stream
    assert stream["content"] == "Echo (gpt-5.2): Stream this back to me" and stream["chunks"] > 2
    assert stream["finish"] == "stop"
    quote = _quote(dev, {**STREAM, "stream": True})
    assert stream["cost_usd"] == pytest.approx(quote / 1e6)
    assert stream["spending"] == {"total_usd": pytest.approx(quote / 1e6), "calls": 1, "ceiling_usd": 0.0}
    assert _spent(run, "stream") == quote
    assert any((Path(run["home"]) / ".blockrun").rglob("*")), "the SDK writes its cost log under the temp HOME"


def test_model_listing_matches_the_gateway_catalog(run: dict[str, Any], dev: DevGateway) -> None:
    models = run["models"]
    assert "error" not in models, models
    rows = httpx.get(dev.url + "/api/v1/models", timeout=10).json()["data"]
    listed = [m["id"] for m in rows]
    chat = {m["id"] for m in rows if not {"image", "audio", "video"} & set(m["categories"])}
    priced = [m["id"] for m in httpx.get(dev.url + "/api/pricing", timeout=10).json()["models"]]
    assert models["client"] == listed and len(listed) == dev.info["models"]  # LLMClient.list_models: /v1/models
    # blockrun_llm.list_models: /pricing, the token-priced (chat) models; media models are in /v1/models only
    assert models["pricing"] == priced and set(priced) == chat and len(chat) < len(listed)
    [row] = models["paid_rows"]
    assert row["billing_mode"] == "paid" and row["pricing"]["input"] > 0 and row["pricing"]["output"] > 0


def test_spend_limits_refuse_before_signing_and_nothing_is_charged(run: dict[str, Any], dev: DevGateway) -> None:
    limits, quote = run["limits"], _quote(dev, LIMITED)
    assert 1000 < quote <= 5500 < 2 * quote  # the limits used: $0.001 per call < q; q <= $0.0055 per session < 2 q
    per_call = limits["per_call"]["error"]
    assert per_call["type"] == "SpendLimitError" and per_call["is_payment_error"]
    assert per_call["scope"] == "call" and per_call["limit_usd"] == 0.001
    assert per_call["quoted_usd"] == pytest.approx(quote / 1e6)
    first, second = limits["session"]
    assert first == {"content": "Echo (gpt-5.2): Within my budget"}
    assert second["error"]["type"] == "SpendLimitError" and second["error"]["scope"] == "session"
    assert limits["spending"]["calls"] == 1
    assert _spent(run, "limits") == quote  # one paid call; both refusals sent nothing


def test_rate_limit_surfaces_as_429_with_retry_after_and_is_never_charged(run: dict[str, Any], dev: DevGateway) -> None:
    rl = run["rate_limit"]
    assert "error" not in rl, rl
    # 1st call: probe 402, signed retry reaches the throttled upstream: 429, not settled.
    # 2nd call: the gateway now knows the model is throttled and answers the unpaid probe with 429, before any 402.
    for outcome in (rl["paid"], rl["probe"]):
        err = outcome["error"]
        assert err["type"] == "APIError" and err["is_api_error"] and not err["is_payment_error"]
        assert err["status_code"] == 429 and err["response"]["code"] == "RATE_LIMITED"
        assert 0 < err["retry_after_seconds"] <= RETRY_AFTER and err["retry_after"] == str(
            int(err["retry_after_seconds"])
        )
    assert rl["paid"]["error"]["retry_after"] == str(RETRY_AFTER)  # the upstream's Retry-After, passed on
    calls = {r["model"]: r["count"] for r in run["upstream"]["requests"]}
    assert calls[THROTTLED_UPSTREAM] == 1  # the probe's 429 and the fallback never reached the throttled upstream
    # fallback_models: the SDK moves on after the probe's 429 and pays for the next model only.
    fallback = rl["fallback"]
    assert fallback["model"] == CHAT_MODEL and fallback["content"] == "Echo (gpt-5.2): Are you busy?"
    quote = _quote(dev, {**FALLBACK, "model": CHAT_MODEL})
    assert fallback["cost_usd"] == pytest.approx(quote / 1e6)
    assert _spent(run, "rate_limit") == quote


def test_anthropic_client_pays_for_messages(run: dict[str, Any], dev: DevGateway) -> None:
    a = run["anthropic"]
    assert "error" not in a, a
    assert (a["type"], a["role"], a["stop_reason"]) == ("message", "assistant", "end_turn")
    assert "Hello from the Anthropic client" in a["text"]
    assert _spent(run, "anthropic") == _quote(dev, MESSAGES, "/api/v1/messages")


def test_async_client_pays_for_chat(run: dict[str, Any], dev: DevGateway) -> None:
    a = run["async"]
    assert "error" not in a, a
    quote = _quote(dev, ASYNC_CHAT)
    assert a["content"] == "Echo (gpt-5.2): Hello from the async client" and a["cost_usd"] == pytest.approx(quote / 1e6)
    assert _spent(run, "async") == quote


def test_unfunded_wallet_gets_a_payment_error_and_the_payee_only_what_was_paid(run: dict[str, Any]) -> None:
    err = run["unfunded"]["error"]
    assert err["type"] == "PaymentError" and "rejected" in err["message"]
    received = int(run["after"]["pay_to"]) - int(run["before"]["pay_to"])
    assert received == sum(_spent(run, payer) for payer in PAYERS) > 0


def test_refused_payments_carry_the_code_the_sdk_reads(dev: DevGateway) -> None:
    """The 402 for a refused payment keeps its x402 body and adds BlockRun's ``code`` (blockrun-clients.md §2.5)."""
    pricier = {**CHAT, "max_tokens": CHAT["max_tokens"] * 2}
    with httpx.Client(base_url=dev.url, timeout=30) as c:

        def refused(key: str, body: dict[str, Any], sign_for: dict[str, Any] | None = None) -> dict[str, Any]:
            challenge = c.post("/api/v1/chat/completions", json=sign_for or body)
            signed = X402Auth(key)._pay(challenge.request, challenge)
            assert signed is not None
            r = c.post("/api/v1/chat/completions", json=body, headers={signed[0]: signed[1]})
            if r.status_code == 200:  # paid: send the same authorization once more
                r = c.post("/api/v1/chat/completions", json=body, headers={signed[0]: signed[1]})
            assert r.status_code == 402 and r.headers["payment-required"], r.text
            assert int(r.headers["content-length"]) == len(r.content)
            data: dict[str, Any] = r.json()
            assert data["x402Version"] == 1 and data["accepts"], data  # the x402 body is intact
            return data

        unfunded = refused(Account.create().key.hex(), CHAT)
        assert (unfunded["code"], unfunded["error"]) == ("PAYMENT_UNFUNDED", "invalid_exact_evm_insufficient_balance")
        key = dev.info["payer_private_keys"][RAW_PAYER]
        assert refused(key, pricier, sign_for=CHAT)["code"] == "PAYMENT_INVALID"  # underpays this body's quote
        assert refused(key, CHAT)["code"] == "PAYMENT_REPLAY"  # settled once; the same authorization again
        unpaid = c.post("/api/v1/chat/completions", json=CHAT)
        assert unpaid.status_code == 402 and "code" not in unpaid.json()  # a plain challenge is left alone


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_resource_url_follows_the_host_the_sdk_called(dev: DevGateway, host: str) -> None:
    """Both SDKs compare resource.url's host:port and scheme with their base URL and silently substitute their own
    on a mismatch (blockrun-clients.md §2.3), so a wrong one would not fail a call: check it directly."""
    base = dev.info["api_url"].replace("127.0.0.1", host)
    r = httpx.post(base + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 402
    assert (
        json.loads(base64.b64decode(r.headers["payment-required"]))["resource"]["url"] == base + "/v1/chat/completions"
    )


def test_media_clients_are_served_and_charged_the_quotes(run: dict[str, Any], dev: DevGateway) -> None:
    media = run["media"]
    assert "error" not in media, media
    assert media["image"] == ["data:image/png;base64,"]  # ImageData.url: the PNG inline
    assert media["track"] == {"url": "data:audio/wav;base64,", "model": MUSIC["model"]}
    assert media["video"]["model"] == VIDEO["model"] and media["video"]["url"].startswith(dev.url + "/api/v1/videos/")
    assert httpx.get(media["video"]["url"], timeout=10).content[:4] == b"\x89PNG"  # the finished job's file
    quotes = [
        _quote(dev, b, f"/api/v1/{p}/generations") for b, p in ((IMAGE, "images"), (MUSIC, "audio"), (VIDEO, "videos"))
    ]
    assert _spent(run, "media") == sum(quotes) == 40_000 + 151_000 + 401_000  # settled once each, at the quote


if __name__ == "__main__":  # the child process started by the ``run`` fixture
    config = json.loads(Path(sys.argv[1]).read_text())
    assert not os.environ.get("BLOCKRUN_API_KEY"), "the API-key rail would ignore api_url"
    Path(sys.argv[2]).write_text(json.dumps(_run_sdk(config["api_url"], config["keys"]), default=str))
