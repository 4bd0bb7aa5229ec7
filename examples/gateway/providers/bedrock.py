"""Claude on Amazon Bedrock: Anthropic Messages bodies over Bedrock's runtime API, SigV4-signed by botocore.

``POST {base_url}/model/{modelId}/invoke`` (JSON) and ``.../invoke-with-response-stream``
(``application/vnd.amazon.eventstream``). The body is the Anthropic Messages body without ``model`` and
``stream`` and with ``anthropic_version: "bedrock-2023-05-31"``; the model is the Bedrock model (or inference
profile) id the endpoint's ``models`` maps the catalog id to. The answer is Anthropic's: a ``message`` object, or
event-stream messages whose ``chunk`` events carry ``{"bytes": base64(<Anthropic SSE event JSON>)}`` -- decoded
with botocore's own event-stream parser into the events the Anthropic provider yields, so ``/v1/messages``
passes them through and ``/v1/chat/completions`` translates them, as with the direct API.

Errors name their type in ``x-amzn-ErrorType`` (``ThrottlingException:http://...``) with a ``{"message"}`` body;
in a stream an ``exception`` message (``:exception-type: throttlingException``) does. Both are classified here.

botocore is imported on first use only: a gateway without Bedrock credentials never loads it::

    config = BedrockConfig("us-east-1", "AKIA...", "secret")      # or BedrockConfig.from_env(os.environ)
    config.base_url                                                # 'https://bedrock-runtime.us-east-1.amazonaws.com'
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from x402_middleware import ConfigurationError
from x402_middleware.wire import loads_untrusted

from ..translate import StreamError
from ..translate.anthropic import to_anthropic_request
from .anthropic import AnthropicProvider
from .base import Call, Decoder, Endpoint
from .errors import failure_from_response
from .failure import AUTH, CLIENT, PROTOCOL, RATE_LIMITED, SERVER, TIMEOUT, UpstreamFailure
from .upstream import UpstreamResponse

if TYPE_CHECKING:
    from botocore.auth import SigV4Auth

#: The ``anthropic_version`` Bedrock's Anthropic models take in the body (not the ``anthropic-version`` header).
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
#: SigV4 signing name of the Bedrock runtime API (its host is ``bedrock-runtime.{region}.amazonaws.com``).
SIGNING_NAME = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"
ERROR_TYPE_HEADER = "x-amzn-errortype"

#: The environment variables (the AWS SDKs' names; BEDROCK_ENDPOINT_URL points at another endpoint, e.g. a VPC one).
ACCESS_KEY_ENV, SECRET_KEY_ENV, SESSION_TOKEN_ENV, REGION_ENV, ENDPOINT_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "BEDROCK_ENDPOINT_URL",
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+\Z")

#: Bedrock's error types (``x-amzn-ErrorType``; in a stream ``:exception-type``, camelCase) -> failure kind.
#: Throttling, an exceeded quota and a model still loading pass to the next endpoint and rest this one, like a
#: 429; an endpoint that cannot serve the model (access, unknown id in this region, bad signature) is skipped.
_ERROR_KINDS = {
    "ThrottlingException": RATE_LIMITED,
    "ServiceQuotaExceededException": RATE_LIMITED,
    "ModelNotReadyException": RATE_LIMITED,
    "ServiceUnavailableException": SERVER,
    "InternalServerException": SERVER,
    "ModelErrorException": SERVER,
    "ModelStreamErrorException": SERVER,
    "ModelTimeoutException": TIMEOUT,
    "AccessDeniedException": AUTH,
    "ResourceNotFoundException": AUTH,
    "UnrecognizedClientException": AUTH,
    "InvalidSignatureException": AUTH,
    "ExpiredTokenException": AUTH,
    "MissingAuthenticationTokenException": AUTH,
    "ValidationException": CLIENT,
}


@dataclass(frozen=True, slots=True)
class BedrockConfig:
    """AWS credentials and region for Bedrock, and an optional endpoint URL (default: the region's public one)."""

    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not _REGION.match(self.region):
            raise ConfigurationError(f"Bedrock region {self.region!r} is not an AWS region such as us-east-1")
        if not self.access_key_id or not self.secret_access_key:
            raise ConfigurationError(f"Bedrock needs both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"Bedrock endpoint URL {self.endpoint_url!r} must be an https:// (or http://) URL")

    @property
    def base_url(self) -> str:
        return (self.endpoint_url or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BedrockConfig | None:
        """From ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``), ``AWS_REGION`` and
        ``BEDROCK_ENDPOINT_URL``; ``None`` when no key is set. Half a configuration raises, saying what is missing."""
        key, secret = env.get(ACCESS_KEY_ENV, "").strip(), env.get(SECRET_KEY_ENV, "").strip()
        if not key and not secret:
            return None
        if not key or not secret:
            raise ConfigurationError(f"Bedrock: set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} (only one is set)")
        region = env.get(REGION_ENV, "").strip()
        if not region:
            raise ConfigurationError(f"Bedrock: AWS credentials are set but {REGION_ENV} is not (e.g. us-east-1)")
        return cls(
            region,
            key,
            secret,
            env.get(SESSION_TOKEN_ENV, "").strip() or None,
            env.get(ENDPOINT_ENV, "").strip() or None,
        )


@functools.lru_cache(maxsize=64)
def signer(config: BedrockConfig) -> SigV4Auth:
    """botocore's SigV4 signer for ``config`` (stateless per request, so one per configuration)."""
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials

    credentials = Credentials(config.access_key_id, config.secret_access_key, config.session_token)
    return SigV4Auth(credentials, SIGNING_NAME, config.region)


def preload(config: BedrockConfig) -> None:
    """Import botocore (~0.15 s) and build the signer at start-up, not inside the first call's timeout."""
    import botocore.eventstream  # noqa: F401 - EventStreamDecoder's, loaded with the signer's modules

    signer(config)


def bedrock_body(call: Call) -> dict[str, Any]:
    """The Anthropic Messages body Bedrock takes: the caller's own (or the translated one), no ``model``/``stream``."""
    if call.native is not None:
        body = {**call.native, "max_tokens": call.max_tokens}
    else:
        body = to_anthropic_request(dict(call.body), call.model.upstream_model, call.max_tokens)
    body.pop("model", None)
    body.pop("stream", None)
    body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    return body


class BedrockProvider(AnthropicProvider):
    """Claude models on Bedrock; the endpoint's ``models`` maps catalog ids to Bedrock model ids, ``aws`` signs."""

    signed = True

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json", **endpoint.headers}

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        model_id = endpoint.models.get(call.model.id)
        if model_id is None:
            # Not an HTTP call: this endpoint cannot serve the model, the pool moves on to the next one.
            raise UpstreamFailure(
                AUTH,
                f"{call.model.id} has no Bedrock model id on endpoint {endpoint.name} (add it to its 'models')",
                endpoint=endpoint.name,
            )
        action = "invoke-with-response-stream" if call.stream else "invoke"
        # Percent-encoded as the AWS SDKs do (':' in '...-v1:0', '/' in an inference profile ARN).
        url = f"{endpoint.base_url.rstrip('/')}/model/{quote(model_id, safe='')}/{action}"
        return url, bedrock_body(call)

    def sign(self, endpoint: Endpoint, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
        from botocore.awsrequest import AWSRequest

        if endpoint.aws is None:  # resolve_endpoints only builds a Bedrock endpoint with its credentials
            raise UpstreamFailure(AUTH, "no AWS credentials for this Bedrock endpoint", endpoint=endpoint.name)
        request_headers = dict(headers)
        if url.endswith("-with-response-stream"):
            request_headers["accept"] = EVENTSTREAM
            request_headers["x-amzn-bedrock-accept"] = "application/json"
        request = AWSRequest(method="POST", url=url, data=body, headers=request_headers)
        signer(endpoint.aws).add_auth(request)
        return dict(request.headers.items())

    def failure(self, status: int, headers: Mapping[str, str], content: bytes, endpoint: str) -> UpstreamFailure:
        return bedrock_failure(status, headers, content, endpoint)

    async def chunks(self, response: UpstreamResponse, decoder: Decoder) -> AsyncIterator[dict[str, Any]]:
        frames = EventStreamDecoder()
        async for piece in response.aiter_bytes():
            for event in frames.feed(piece):
                for item in decoder.feed(event):
                    yield item
                if decoder.done:
                    return
        for item in decoder.end():
            yield item


def bedrock_failure(status: int, headers: Mapping[str, str], content: bytes, endpoint: str) -> UpstreamFailure:
    """An error response classified by its ``x-amzn-ErrorType`` (else by status, as for the other providers)."""
    generic = failure_from_response(status, headers, content, endpoint)
    error_type = (headers.get(ERROR_TYPE_HEADER) or "").split(":", 1)[0].strip()
    if not error_type:
        error_type = _body_type(content)
    if not error_type:
        return generic
    return UpstreamFailure(
        _ERROR_KINDS.get(error_type, generic.kind),
        f"{error_type}: {generic.message}"[:500],
        status=status,
        retry_after=generic.retry_after,
        endpoint=endpoint,
    )


def _body_type(content: bytes) -> str:
    # Some AWS front ends answer in the JSON protocol's envelope instead: {"__type": "...#ThrottlingException"}.
    try:
        body = loads_untrusted(content)
    except ValueError:
        return ""
    kind = body.get("__type") if isinstance(body, Mapping) else None
    return kind.rsplit("#", 1)[-1] if isinstance(kind, str) else ""


class EventStreamDecoder:
    """Sans-I/O: Bedrock's event-stream body in pieces -> the Anthropic event objects its ``chunk`` events carry.

    Framing and checksums are botocore's ``EventStreamBuffer``'s; an ``exception`` or ``error`` message raises
    :class:`StreamError` with the failure kind of its type (a throttled stream is ``rate_limited``). A body cut
    inside a message yields nothing more; the Anthropic decoder then fails for the missing ``message_stop``::

        decoder = EventStreamDecoder()
        for event in decoder.feed(piece):   # {"type": "message_start", ...}, ...
            ...
    """

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                parsed = message.to_response_dict()  # headers and payload (botocore's typed view)
                event = _event(parsed["headers"], parsed["body"])
                if event is not None:
                    yield event
        except ParserError as exc:
            raise StreamError(f"unreadable Bedrock event stream ({type(exc).__name__}: {exc})", PROTOCOL) from exc


def _event(headers: Mapping[str, Any], payload: bytes) -> dict[str, Any] | None:
    message_type = headers.get(":message-type")
    if message_type == "event":
        if headers.get(":event-type") != "chunk":
            return None  # Bedrock may add event types; only chunks carry model output
        try:
            wrapper = loads_untrusted(payload)
            event = loads_untrusted(base64.b64decode(wrapper["bytes"], validate=True))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise StreamError(f"unreadable Bedrock chunk ({type(exc).__name__})", PROTOCOL) from exc
        if not isinstance(event, dict):
            raise StreamError("a Bedrock chunk that is not a JSON object", PROTOCOL)
        return event
    if message_type == "exception":
        name = str(headers.get(":exception-type") or "exception")
        try:
            body = loads_untrusted(payload)
        except ValueError:
            body = None
        text = body.get("message") or body.get("Message") if isinstance(body, Mapping) else None
        error_type = name[:1].upper() + name[1:]  # in a stream the types are camelCase: throttlingException
        kind = _ERROR_KINDS.get(error_type, SERVER)
        raise StreamError(f"{error_type}: {text or 'Bedrock stream exception'}", kind)
    if message_type == "error":
        code, text = headers.get(":error-code", "error"), headers.get(":error-message", "")
        raise StreamError(f"{code}: {text}", SERVER)
    raise StreamError(f"unexpected Bedrock event-stream message type {message_type!r}", PROTOCOL)
