"""Emulated Amazon Bedrock runtime for Anthropic models: ``POST /model/{modelId}/invoke`` and
``/model/{modelId}/invoke-with-response-stream``, SigV4-checked, in Bedrock's wire format.

Every request must carry a well-formed ``AWS4-HMAC-SHA256`` ``Authorization`` header for one of the emulator's
test keys (:data:`ACCESS_KEY_ID`, or :data:`TEMPORARY_ACCESS_KEY_ID` with its :data:`SESSION_TOKEN`), scoped to
the ``bedrock`` service, dated within 15 minutes, and its signature is recomputed with botocore over the request
as it arrived (raw path, signed headers, body): a signing bug answers 403 ``InvalidSignatureException`` as AWS
does. The body is the Anthropic Messages body without ``model`` and ``stream`` and with
``anthropic_version: "bedrock-2023-05-31"`` (anything else is a 400 ``ValidationException``); the answer is the
Anthropic emulator's, as a JSON ``message`` or as ``application/vnd.amazon.eventstream`` messages whose ``chunk``
events carry ``{"bytes": base64(<Anthropic event JSON>)}``, framed by :func:`frame` (prelude, headers, payload,
CRC32s). Errors are Bedrock's: the type in ``x-amzn-ErrorType``, ``{"message": ...}`` as the body, no
``Retry-After`` (Bedrock sends none); ``error-mid-stream`` ends a stream with a ``throttlingException`` message.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import re
import struct
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import _anthropic
from ._http import context, json_response, read_json, send_events, send_json_slowly, status_fault

#: The emulator's test credentials (AWS's documentation example keys). The temporary key needs its session token.
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TEMPORARY_ACCESS_KEY_ID = "ASIAIOSFODNN7EXAMPLE"
TEMPORARY_SECRET_ACCESS_KEY = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEmulatorSessionToken//EXAMPLE=="
_KEYS = {
    ACCESS_KEY_ID: (SECRET_ACCESS_KEY, None),
    TEMPORARY_ACCESS_KEY_ID: (TEMPORARY_SECRET_ACCESS_KEY, SESSION_TOKEN),
}
BEDROCK_VERSION = "bedrock-2023-05-31"
EVENTSTREAM = "application/vnd.amazon.eventstream"
MAX_SKEW = datetime.timedelta(minutes=15)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})\Z"
)
_MODEL = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.(?P<name>claude-[a-z0-9.-]+?)-v\d+(?::\d+)?\Z")
_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model returned an error. Try your request again."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def error(status: int, retry_after: int | None = None, message: str | None = None, kind: str | None = None) -> Response:
    """Bedrock's error: ``x-amzn-ErrorType: <Type>:http://internal.amazon.com/coral/com.amazon.bedrock/`` and
    ``{"message": ...}``. ``retry_after`` is ignored: Bedrock's throttling sends no ``Retry-After``."""
    default_kind, default = _ERRORS.get(status, ("InternalServerException", "The server encountered an error."))
    headers = {
        "x-amzn-errortype": f"{kind or default_kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-requestid": str(uuid.uuid4()),
    }
    return json_response({"message": message or default}, status, headers)


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message.

    Prelude: total length and headers length (big-endian uint32 each) and the CRC32 of those 8 bytes; then each
    header as name length (uint8), name, value type 7 (string), value length (uint16), value; the payload; and
    the CRC32 of everything before it.
    """
    encoded = b"".join(
        struct.pack("!B", len(name)) + name + struct.pack("!BH", 7, len(value)) + value
        for name, value in ((k.encode(), v.encode()) for k, v in headers.items())
    )
    prelude = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def chunk_frame(event: Mapping[str, Any], index: int = 0) -> bytes:
    """A ``chunk`` event carrying one Anthropic event, padded (``p``) as Bedrock pads to hide lengths."""
    data = base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode()
    payload = json.dumps({"bytes": data, "p": _PAD[: 4 + index % 40]}, separators=(",", ":")).encode()
    return frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)


def exception_frame(kind: str, message: str) -> bytes:
    """A stream exception (``:message-type: exception``), e.g. ``throttlingException``."""
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


def verify_signature(request: Request, body: bytes) -> Response | None:
    """The 403 AWS answers for this request's SigV4 signature, or ``None`` when it is valid."""
    header = request.headers.get("authorization")
    if not header:
        return error(403, message="Missing Authentication Token", kind="MissingAuthenticationTokenException")
    m = _AUTH.match(header)
    if m is None:
        return error(
            403,
            message="Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
            kind="IncompleteSignatureException",
        )
    if m["service"] != "bedrock":
        return error(
            403, message="Credential should be scoped to correct service: 'bedrock'.", kind="InvalidSignatureException"
        )
    if m["key"] not in _KEYS:
        return error(403, message=_ERRORS[401][1], kind=_ERRORS[401][0])
    secret, token = _KEYS[m["key"]]
    signed = m["signed"].split(";")
    amz_date = request.headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return error(403, message="X-Amz-Date is missing or malformed.", kind="IncompleteSignatureException")
    if abs(datetime.datetime.now(datetime.UTC) - when) > MAX_SKEW or amz_date[:8] != m["date"]:
        return error(
            403, message=f"Signature expired: {amz_date} is not within 15 minutes.", kind="InvalidSignatureException"
        )
    if "host" not in signed or "x-amz-date" not in signed or any(h not in request.headers for h in signed):
        return error(
            403,
            message="Signed headers are missing host, x-amz-date or a header the request lacks.",
            kind="IncompleteSignatureException",
        )
    if token is not None and (
        request.headers.get("x-amz-security-token") != token or "x-amz-security-token" not in signed
    ):
        return error(
            403, message="The security token included in the request is invalid.", kind="UnrecognizedClientException"
        )
    if not hmac.compare_digest(_expected_signature(request, body, m, secret, token, signed, amz_date), m["signature"]):
        return error(
            403,
            message="The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
            kind="InvalidSignatureException",
        )
    return None


def _expected_signature(
    request: Request, body: bytes, m: re.Match[str], secret: str, token: str | None, signed: list[str], amz_date: str
) -> str:
    # botocore's own SigV4 over the request as it arrived: the raw path (as sent, not decoded), the signed headers.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.query
    url = f"http://{request.headers['host']}{raw_path.decode('latin-1')}" + (f"?{query}" if query else "")
    aws_request = AWSRequest(method=request.method, url=url, data=body, headers={h: request.headers[h] for h in signed})
    aws_request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(m["key"], secret, token), m["service"], m["region"])
    return auth.signature(auth.string_to_sign(aws_request, auth.canonical_request(aws_request)), aws_request)


async def dispatch(request: Request) -> Response:
    """``/model/{modelId}/invoke`` and ``/model/{modelId}/invoke-with-response-stream`` (modelId may hold ``/``)."""
    model_id, _, action = request.path_params["rest"].rpartition("/")
    if action not in ("invoke", "invoke-with-response-stream") or not model_id:
        return error(
            404,
            message=f"Unknown operation {action!r}; use invoke or invoke-with-response-stream",
            kind="UnknownOperationException",
        )
    raw = await request.body()
    if (refused := verify_signature(request, raw)) is not None:
        return refused
    m = _MODEL.match(model_id.rsplit("/", 1)[-1])  # an inference profile ARN ends with the profile id
    if m is None:
        return error(400, message="The provided model identifier is invalid.")
    body = await read_json(request)
    problem = _validate(body)
    if problem:
        return error(400, message=f"Malformed input request: {problem}, please reformat your input and try again.")
    messages = {**body, "model": m["name"]}  # the Anthropic emulator's body: its answer names this model
    problem = _anthropic.validate(messages)
    if problem:
        return error(400, message=problem)
    ctx = await context(request, "bedrock", model_id)
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    mid = "msg_bdrk_" + uuid.uuid4().hex[:24]
    if action == "invoke":
        answer = _anthropic.message(messages, mid)
        usage = answer["usage"]
        headers = {
            "x-amzn-requestid": str(uuid.uuid4()),
            "x-amzn-bedrock-input-token-count": str(usage["input_tokens"]),
            "x-amzn-bedrock-output-token-count": str(usage["output_tokens"]),
            "x-amzn-bedrock-invocation-latency": "5",
        }
        return send_json_slowly(answer, ctx.fault, headers)
    events = [data for _, data in _anthropic.stream_events(messages, mid)]
    start, delta = events[0]["message"]["usage"], events[-2]["usage"]
    events[-1] = {
        **events[-1],
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": start["input_tokens"],
            "outputTokenCount": delta["output_tokens"],
            "invocationLatency": 5,
            "firstByteLatency": 2,
        },
    }
    throttled = exception_frame("throttlingException", "Too many tokens, please wait before trying again.")
    return send_events([chunk_frame(e, i) for i, e in enumerate(events)], ctx.fault, throttled, EVENTSTREAM)


def _validate(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return "#: expected type: JSONObject"
    if body.get("anthropic_version") != BEDROCK_VERSION:
        return f"#/anthropic_version: expected {BEDROCK_VERSION!r}"
    for key in ("model", "stream"):
        if key in body:
            return f"#: extraneous key [{key}] is not permitted"
    return None
