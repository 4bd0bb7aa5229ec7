"""Claude on Amazon Bedrock: the event-stream framing, SigV4 signatures checked by the emulator with botocore,
Anthropic clients and OpenAI clients served by Bedrock (streamed and not), the failover Bedrock -> the direct
Anthropic API (paid: one payment, settled once, for the success only), exhaustion, the pool order with and
without AWS credentials, and the error classification."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette

from examples.gateway import Gateway, GatewayConfig, create_app, emulator_pools, price_of
from examples.gateway.catalog import Catalog
from examples.gateway.emulator import EmulatorServer
from examples.gateway.emulator._bedrock import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    TEMPORARY_ACCESS_KEY_ID,
    TEMPORARY_SECRET_ACCESS_KEY,
    chunk_frame,
    exception_frame,
    frame,
)
from examples.gateway.providers import BedrockConfig
from examples.gateway.providers.bedrock import EventStreamDecoder, bedrock_failure
from examples.gateway.providers.failure import AUTH, CLIENT, PROTOCOL, RATE_LIMITED, SERVER, TIMEOUT
from examples.gateway.sse import iter_events
from examples.gateway.translate import StreamError
from tests._dev_gateway import clean_env
from tests._servers import ROOT
from x402_middleware import ConfigurationError

from .._facilitator_double import FakeFacilitator
from .conftest import CONTROL, FAST, client_for, emulator_requests, set_fault
from .test_metrics import paid_wrap, paying_client

pytestmark = pytest.mark.anyio

CREDENTIALS = BedrockConfig("us-east-1", ACCESS_KEY_ID, SECRET_ACCESS_KEY)
CLAUDE, UPSTREAM = "anthropic/claude-sonnet-4.6", "claude-sonnet-4-6"
BEDROCK_ID = "global.anthropic.claude-sonnet-4-6-v1:0"  # the bundled catalog's map (catalog.json)
BODY: dict[str, Any] = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}
THINKING: dict[str, Any] = {
    "model": CLAUDE,
    "max_tokens": 4096,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "system": [{"type": "text", "text": "You echo. " * 20, "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "hello there"}],
}
ANTHROPIC_HEADERS = {"x-api-key": "emulator", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def make_bedrock(emulator: EmulatorServer, catalog: Catalog) -> AsyncIterator[Callable[..., Starlette]]:
    """``make_bedrock(credentials=..., **config)``: the anthropic pool is Bedrock (``/_ep/bedrock``) first, then the
    direct API (``/_ep/anthropic``), both on the emulator; the other pools as the default fixture has them."""
    apps: list[Starlette] = []

    def make(credentials: BedrockConfig | None = CREDENTIALS, wrap: Any = None, **config: Any) -> Starlette:
        config.setdefault("timeouts", FAST)
        pools = emulator_pools(emulator.url, catalog, endpoints=("anthropic",), bedrock=True)
        apps.append(create_app(GatewayConfig(catalog=catalog, pools=pools, bedrock=credentials, **config), wrap=wrap))
        return apps[-1]

    yield make
    for app in apps:
        await app.state.gateway.aclose()


async def _post(app: Starlette, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    async with client_for(app) as c:
        return await c.post(path, json=body, **kw)


def _events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, json.loads(e.data)) for e in iter_events(text.splitlines()) if e.data != "[DONE]"]


def _direct(emulator: EmulatorServer, body: dict[str, Any]) -> httpx.Response:
    """The same request straight to the emulated direct Anthropic API."""
    return CONTROL.post(emulator.url + "/v1/messages", json={**body, "model": UPSTREAM}, headers=ANTHROPIC_HEADERS)


# -- the event-stream framing ----------------------------------------------------------------------------------------
def test_frames_decode_with_botocore_in_any_split_and_exceptions_raise() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_bdrk_1"}},
        {"type": "ping"},
        {"type": "message_stop"},
    ]
    body = b"".join(chunk_frame(e, i) for i, e in enumerate(events))
    for size in (1, 7, len(body)):  # byte by byte, odd pieces, all at once
        decoder = EventStreamDecoder()
        got = [e for start in range(0, len(body), size) for e in decoder.feed(body[start : start + size])]
        assert got == events, size
    # Not a chunk: other event types are skipped; a broken checksum is a protocol failure.
    other = frame({":event-type": "metadata", ":message-type": "event"}, b"{}")
    assert list(EventStreamDecoder().feed(other)) == []
    corrupt = bytearray(chunk_frame(events[0]))
    corrupt[-5] ^= 0xFF
    with pytest.raises(StreamError) as broken:
        list(EventStreamDecoder().feed(bytes(corrupt)))
    assert broken.value.kind == PROTOCOL and "ChecksumMismatch" in broken.value.message
    # An exception message after a good chunk: the chunk first, then the failure of its kind.
    decoder, seen = EventStreamDecoder(), list[dict[str, Any]]()
    with pytest.raises(StreamError) as throttled:
        seen.extend(decoder.feed(chunk_frame(events[0]) + exception_frame("throttlingException", "Too many tokens")))
    assert seen == events[:1]
    assert throttled.value.kind == RATE_LIMITED and throttled.value.message == "ThrottlingException: Too many tokens"
    with pytest.raises(StreamError) as server:
        list(EventStreamDecoder().feed(exception_frame("internalServerException", "oops")))
    assert server.value.kind == SERVER


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (429, "ThrottlingException", RATE_LIMITED),
        (429, "ModelNotReadyException", RATE_LIMITED),
        (400, "ServiceQuotaExceededException", RATE_LIMITED),  # a 400 the generic rules would not retry
        (503, "ServiceUnavailableException", SERVER),
        (500, "InternalServerException", SERVER),
        (424, "ModelErrorException", SERVER),
        (408, "ModelTimeoutException", TIMEOUT),
        (403, "AccessDeniedException", AUTH),
        (404, "ResourceNotFoundException", AUTH),
        (400, "ValidationException", CLIENT),
        (418, "SomethingNewException", CLIENT),  # unknown: by status, as for the other providers
    ],
)
def test_errors_are_classified_by_their_bedrock_type(status: int, error_type: str, kind: str) -> None:
    headers = {"x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    failure = bedrock_failure(status, headers, b'{"message":"Too many requests"}', "bedrock")
    assert failure.kind == kind and failure.status == status and failure.endpoint == "bedrock"
    assert failure.message == f"{error_type}: Too many requests"
    # The JSON protocol's envelope names the type in the body instead.
    body = json.dumps({"__type": f"com.amazon.bedrock#{error_type}", "message": "x"}).encode()
    assert bedrock_failure(status, {}, body, "bedrock").kind == kind


# -- the emulator checks SigV4 with botocore ---------------------------------------------------------------------------
def _signed(
    emulator: EmulatorServer,
    body: bytes,
    *,
    key: str = ACCESS_KEY_ID,
    secret: str = SECRET_ACCESS_KEY,
    token: str | None = None,
    service: str = "bedrock",
    when: datetime.datetime | None = None,
) -> tuple[str, dict[str, str]]:
    url = f"{emulator.url}/model/{BEDROCK_ID.replace(':', '%3A')}/invoke"
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    auth = SigV4Auth(Credentials(key, secret, token), service, "us-east-1")
    if when is None:
        auth.add_auth(request)
    else:  # botocore's steps with a chosen clock
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        signed = auth.signed_headers(auth.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed}, Signature={signature}"
        )
    return url, dict(request.headers.items())


def test_the_emulator_verifies_sigv4_signatures(emulator: EmulatorServer) -> None:
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": BODY["messages"]})
    raw = body.encode()
    url, headers = _signed(emulator, raw)
    ok = CONTROL.post(url, content=raw, headers=headers)
    assert ok.status_code == 200 and ok.json()["id"].startswith("msg_bdrk_")
    assert ok.json()["model"] == UPSTREAM and ok.headers["x-amzn-bedrock-output-token-count"] == "4"

    def refused(url: str, headers: dict[str, str], content: bytes = raw) -> tuple[int, str, str]:
        r = CONTROL.post(url, content=content, headers=headers)
        return r.status_code, r.headers["x-amzn-errortype"].split(":")[0], r.json()["message"]

    assert refused(url, {"content-type": "application/json"})[:2] == (403, "MissingAuthenticationTokenException")
    assert refused(url, {**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=x"})[1] == (
        "IncompleteSignatureException"
    )
    status, kind, message = refused(*_signed(emulator, raw, secret="not-the-secret"))
    assert (status, kind) == (403, "InvalidSignatureException") and "does not match" in message
    assert refused(url, headers, raw.replace(b"16", b"17"))[1] == "InvalidSignatureException"  # body changed
    assert refused(url.replace("%3A", ":"), headers)[1] == "InvalidSignatureException"  # path sent unlike signed
    assert refused(*_signed(emulator, raw, service="s3"))[1] == "InvalidSignatureException"
    assert refused(*_signed(emulator, raw, key="AKIANOTAKNOWNKEY0000"))[:2] == (403, "UnrecognizedClientException")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    assert "expired" in refused(*_signed(emulator, raw, when=old))[2]
    # Temporary credentials: the session token must be sent and signed.
    key, secret = TEMPORARY_ACCESS_KEY_ID, TEMPORARY_SECRET_ACCESS_KEY
    url, headers = _signed(emulator, raw, key=key, secret=secret, token=SESSION_TOKEN)
    assert CONTROL.post(url, content=raw, headers=headers).status_code == 200
    for token in (None, "another-token"):
        assert refused(*_signed(emulator, raw, key=key, secret=secret, token=token))[1] == "UnrecognizedClientException"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": UPSTREAM}, "extraneous key [model]"),
        ({"stream": True}, "extraneous key [stream]"),
        ({"anthropic_version": "2023-06-01"}, "anthropic_version"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_the_emulator_refuses_what_bedrock_refuses(
    emulator: EmulatorServer, change: dict[str, Any], message: str
) -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": BODY["messages"], **change}
    raw = json.dumps(body).encode()
    url, headers = _signed(emulator, raw)
    r = CONTROL.post(url, content=raw, headers=headers)
    assert r.status_code == 400 and r.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert message in r.json()["message"]


# -- Anthropic and OpenAI clients served by Bedrock --------------------------------------------------------------------
async def test_messages_served_by_bedrock_are_the_anthropic_answer(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_bedrock()
    r = await _post(app, "/v1/messages", BODY)
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-upstream"] == "bedrock"
    out, direct = r.json(), _direct(emulator, BODY).json()
    assert out["id"].startswith("msg_bdrk_") and out["model"] == CLAUDE
    assert {k: v for k, v in out.items() if k not in ("id", "model")} == {
        k: v for k, v in direct.items() if k not in ("id", "model")
    }
    assert emulator_requests(emulator, endpoint="bedrock", api="bedrock", model=BEDROCK_ID) == 1
    assert emulator_requests(emulator, endpoint="anthropic") == 0


async def test_messages_stream_from_bedrock_passes_every_event_through(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    body = {**THINKING, "stream": True}
    r = await _post(make_bedrock(), "/v1/messages", body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-gateway-upstream"] == "bedrock"
    events, direct = _events(r.text), _events(_direct(emulator, body).text)
    start = events[0][1]["message"]
    assert start["model"] == CLAUDE and start["id"].startswith("msg_bdrk_")
    assert events[1:-1] == direct[1:-1]  # thinking, signature_delta, text, usage: as the Anthropic API sends them
    (name, stop) = events[-1]
    assert name == "message_stop" and stop["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    assert start["usage"]["cache_read_input_tokens"] > 0


async def test_thinking_blocks_and_their_signature_round_trip_through_bedrock(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_bedrock()
    r = await _post(app, "/v1/messages", THINKING, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "bedrock"
    out = r.json()
    thinking = out["content"][0]
    assert thinking["type"] == "thinking" and thinking == _direct(emulator, THINKING).json()["content"][0]
    messages: list[dict[str, Any]] = [*THINKING["messages"], {"role": "assistant", "content": out["content"]}]
    messages.append({"role": "user", "content": "again"})
    turn = {**THINKING, "messages": messages}
    assert (await _post(app, "/v1/messages", turn)).status_code == 200
    # Without its signature Bedrock answers 400 ValidationException: the caller's fault, not retried elsewhere.
    messages[1] = {"role": "assistant", "content": [{k: v for k, v in thinking.items() if k != "signature"}]}
    refused = await _post(app, "/v1/messages", turn)
    assert refused.status_code == 400 and "signature" in refused.text
    assert emulator_requests(emulator, endpoint="anthropic") == 0


async def test_openai_clients_get_bedrock_translated(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_bedrock()
    chat = {**BODY, "max_tokens": 4096}
    completion = (await _post(app, "/v1/chat/completions", chat)).json()
    assert completion["object"] == "chat.completion" and completion["model"] == CLAUDE
    assert completion["choices"][0]["message"]["content"] == f"Echo ({UPSTREAM}): hello there"
    assert completion["usage"]["completion_tokens"] == 4
    r = await _post(app, "/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "bedrock" and r.text.endswith("data: [DONE]\n\n")
    chunks = [d for _, d in _events(r.text)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == f"Echo ({UPSTREAM}): hello there" and chunks[-1]["usage"]["completion_tokens"] == 4
    assert (
        emulator_requests(emulator, endpoint="bedrock") == 2 and emulator_requests(emulator, endpoint="anthropic") == 0
    )


async def test_temporary_credentials_and_an_inference_profile_arn(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer, catalog: Catalog
) -> None:
    # An ARN holds ':' and '/': both percent-encoded in the path, and signed as sent.
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6-v1:0"
    pools = emulator_pools(emulator.url, catalog, endpoints=("anthropic",), bedrock=True)
    bedrock = replace(pools["anthropic"][0], models={CLAUDE: arn})
    temporary = BedrockConfig("us-east-1", TEMPORARY_ACCESS_KEY_ID, TEMPORARY_SECRET_ACCESS_KEY, SESSION_TOKEN)
    config = GatewayConfig(catalog=catalog, pools={**pools, "anthropic": (bedrock,)}, bedrock=temporary, timeouts=FAST)
    app = create_app(config)
    for stream in (False, True):
        r = await _post(app, "/v1/messages", {**BODY, "stream": stream})
        assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "bedrock", r.text
    await app.state.gateway.aclose()
    assert emulator_requests(emulator, endpoint="bedrock", model=arn) == 2


# -- failover ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout;delay=1", "slow-first-byte;delay=1"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True])
async def test_bedrock_failures_fail_over_to_the_direct_api(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer, fault: str, path: str, stream: bool
) -> None:
    set_fault(emulator, fault, endpoint="bedrock")
    r = await _post(make_bedrock(), path, {**BODY, "stream": stream})
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-upstream"] == "anthropic"
    assert (
        emulator_requests(emulator, endpoint="bedrock") == 1 and emulator_requests(emulator, endpoint="anthropic") == 1
    )


async def test_signing_failures_and_unmapped_models_go_to_the_direct_api(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer, catalog: Catalog
) -> None:
    wrong = BedrockConfig("us-east-1", ACCESS_KEY_ID, "not-the-secret")
    r = await _post(make_bedrock(credentials=wrong), "/v1/messages", BODY)
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "anthropic"
    assert emulator_requests(emulator, endpoint="bedrock") == 0  # refused (403) before it counted as a model call
    # A model the Bedrock endpoint has no id for is not sent there at all.
    pools = emulator_pools(emulator.url, catalog, endpoints=("anthropic",), bedrock=True)
    bedrock, direct = pools["anthropic"]
    haiku_only = replace(bedrock, models={"anthropic/claude-haiku-4.5": "anthropic.claude-haiku-4-5-20251001-v1:0"})
    config = GatewayConfig(catalog=catalog, pools={**pools, "anthropic": (haiku_only, direct)}, bedrock=CREDENTIALS)
    app = create_app(config)
    r = await _post(app, "/v1/messages", BODY)
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "anthropic"
    assert emulator_requests(emulator, endpoint="bedrock") == 0
    await app.state.gateway.aclose()


async def test_a_validation_error_is_answered_at_once(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "400", endpoint="bedrock")
    r = await _post(make_bedrock(), "/v1/chat/completions", BODY)
    assert r.status_code == 400 and "ValidationException" in r.json()["message"]
    assert emulator_requests(emulator, endpoint="anthropic") == 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
async def test_an_exception_mid_stream_ends_the_stream_with_an_error(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer, path: str
) -> None:
    set_fault(emulator, "error-mid-stream", endpoint="bedrock")
    r = await _post(make_bedrock(), path, {**BODY, "stream": True})
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "bedrock"  # started: too late to fail over
    assert emulator_requests(emulator, endpoint="anthropic") == 0
    events = _events(r.text)
    if path == "/v1/messages":
        assert events[0][0] == "message_start" and events[-1][0] == "error"
        assert "ThrottlingException" in events[-1][1]["error"]["message"]
    else:
        assert events[-1][1]["error"]["code"] == "UPSTREAM_STREAM_ERROR" and "[DONE]" not in r.text


@pytest.mark.parametrize("stream", [False, True])
async def test_all_throttled_is_the_gateways_429_with_retry_after(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer, stream: bool
) -> None:
    set_fault(emulator, "429", endpoint="bedrock")  # Bedrock's ThrottlingException gives no delay
    set_fault(emulator, "429", endpoint="anthropic", retry_after=12)
    r = await _post(make_bedrock(), "/v1/messages", {**BODY, "stream": stream})
    assert r.status_code == 429 and r.headers["retry-after"] == "12"
    assert r.headers["x-ratelimit-source"] == "anthropic" and r.json()["retry_after_seconds"] == 12
    assert r.headers["content-type"] == "application/json"
    CONTROL.delete(emulator.url + "/_control")
    set_fault(emulator, "429")  # neither gives a delay: the gateway's default
    r = await _post(make_bedrock(), "/v1/chat/completions", {**BODY, "stream": stream})
    assert r.status_code == 429 and r.headers["retry-after"] == "60" and r.json()["code"] == "RATE_LIMITED"


async def test_paid_failover_charges_once_for_the_success_only(
    make_bedrock: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    facilitator = FakeFacilitator()
    app = make_bedrock(wrap=paid_wrap(facilitator))
    gateway: Gateway = app.state.gateway
    quote = price_of(gateway, "/v1/messages", BODY)
    assert quote is not None and isinstance(quote.amount, int) and quote.amount > 0
    set_fault(emulator, "429", endpoint="bedrock", times=1)
    async with paying_client(app) as c:
        r = await c.post("/v1/messages", json=BODY)
        assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "anthropic"
        assert [p.amount for _, p in facilitator.settled] == [quote.amount]  # one payment, settled once
        # Every endpoint throttled: the paid call is answered 429 and its payment never settled.
        set_fault(emulator, "429")
        throttled = await c.post("/v1/messages", json={**BODY, "stream": True})
    assert throttled.status_code == 429 and throttled.headers["retry-after"]
    assert [p.amount for _, p in facilitator.settled] == [quote.amount]
    assert emulator_requests(emulator, endpoint="bedrock") == 1  # then resting: the second call skipped it
    assert emulator_requests(emulator, endpoint="anthropic") == 2


# -- configuration ----------------------------------------------------------------------------------------------------
def test_bedrock_is_first_in_the_anthropic_pool_when_credentials_are_set(catalog: Catalog) -> None:
    keys = {"ANTHROPIC_API_KEY": "sk-ant"}
    assert [e.name for e in Gateway(GatewayConfig(catalog=catalog, env=keys)).pools.endpoints["anthropic"]] == [
        "anthropic"
    ]
    aws = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_REGION": "eu-west-3"}
    first, second = Gateway(GatewayConfig(catalog=catalog, env={**keys, **aws})).pools.endpoints["anthropic"]
    assert (first.name, first.kind, second.name) == ("bedrock", "bedrock", "anthropic")
    assert first.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com" and first.models[CLAUDE] == BEDROCK_ID
    assert first.aws == BedrockConfig("eu-west-3", ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    # Bedrock alone serves the family's models; an endpoint URL override (a VPC endpoint) is used as given.
    vpc = "https://vpce-0a1.bedrock-runtime.eu-west-3.vpce.amazonaws.com"
    (only,) = Gateway(GatewayConfig(catalog=catalog, env={**aws, "BEDROCK_ENDPOINT_URL": vpc})).pools.endpoints[
        "anthropic"
    ]
    assert only.name == "bedrock" and only.base_url == vpc
    # Credentials given in code win over the environment.
    code = Gateway(GatewayConfig(catalog=catalog, env=aws, bedrock=CREDENTIALS)).pools.endpoints["anthropic"]
    assert code[0].aws == CREDENTIALS
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        Gateway(GatewayConfig(catalog=catalog, env={k: v for k, v in aws.items() if k != "AWS_REGION"}))
    with pytest.raises(ConfigurationError, match="both"):
        Gateway(GatewayConfig(catalog=catalog, env={"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_REGION": "us-east-1"}))


def test_without_aws_credentials_the_unavailable_message_names_them(catalog: Catalog) -> None:
    gateway = Gateway(GatewayConfig(catalog=catalog, env={}))
    assert gateway.pools.required_env["anthropic"] == [
        "ANTHROPIC_API_KEY",
        "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY + AWS_REGION",
    ]


def test_catalog_rules_for_bedrock_endpoints(catalog: Catalog) -> None:
    from examples.gateway.catalog import CatalogError, endpoint_spec, parse_catalog

    spec = endpoint_spec({"name": "b", "kind": "bedrock", "models": {CLAUDE: BEDROCK_ID}})
    assert spec.models == {CLAUDE: BEDROCK_ID} and spec.base_url is None
    for raw, message in [
        ({"name": "b", "kind": "bedrock"}, 'needs "models"'),
        ({"name": "b", "kind": "bedrock", "models": {CLAUDE: BEDROCK_ID}, "api_key_env": "K"}, "AWS credentials"),
        ({"name": "o", "kind": "openai", "base_url": "https://x", "models": {CLAUDE: "x"}}, "bedrock endpoints only"),
    ]:
        with pytest.raises(CatalogError, match=message):
            endpoint_spec(raw)
    data = json.loads((ROOT / "examples/gateway/catalog.json").read_text())
    data["pools"]["anthropic"][0]["models"]["openai/gpt-5.2"] = "x"  # a model of another pool
    with pytest.raises(CatalogError, match="not models of the 'anthropic' pool"):
        parse_catalog(data)


def test_botocore_is_loaded_only_when_bedrock_is_configured() -> None:
    code = (
        "import sys\n"
        "from examples.gateway import GatewayConfig, create_app\n"
        "from examples.gateway.emulator import create_emulator_app\n"
        "create_app(GatewayConfig(env={'ANTHROPIC_API_KEY': 'k'})); create_emulator_app()\n"
        "assert 'botocore' not in sys.modules, 'botocore loaded without Bedrock'\n"
        "create_app(GatewayConfig(env={'AWS_ACCESS_KEY_ID': 'AKIA1', 'AWS_SECRET_ACCESS_KEY': 's', 'AWS_REGION': "
        "'us-east-1'}))\n"
        "assert 'botocore.auth' in sys.modules and 'botocore.eventstream' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), check=True, timeout=60)


def test_the_emulator_pools_leave_bedrock_out_unless_asked(catalog: Catalog) -> None:
    pools = emulator_pools("http://127.0.0.1:9", catalog)
    assert [(s.name, s.kind) for s in pools["anthropic"]] == [("emulator-anthropic", "anthropic")]
    with_bedrock = emulator_pools("http://127.0.0.1:9", catalog, bedrock=True)["anthropic"]
    assert [(s.name, s.kind) for s in with_bedrock] == [("bedrock", "bedrock"), ("emulator-anthropic", "anthropic")]
    assert with_bedrock[0].base_url == "http://127.0.0.1:9/_ep/bedrock" and with_bedrock[0].models[CLAUDE] == BEDROCK_ID
