"""The gateway core without HTTP: catalog lookups, request preparation, quotes, upstream pools.

:meth:`Gateway.quote` is the seam for the payment layer: the same function the
handlers run first, so a body it refuses (``GatewayError``) is refused by the app
before any upstream call, and a body it prices is the body the app serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog, ModelInfo
from .config import GatewayConfig
from .errors import InvalidRequest, RateLimited, UnknownModel
from .media.catalog import MediaModel
from .media.requests import MediaCall, prepare_media
from .pools import Pools, Throttle
from .providers import Call
from .quote import Quote, chat_quote, messages_quote
from .translate.anthropic import from_anthropic_request

CHAT, MESSAGES = "chat", "messages"
#: The paid inference routes (each also under ``/api``, BlockRun's layout).
INFERENCE_PATHS = ("/v1/chat/completions", "/api/v1/chat/completions", "/v1/messages", "/api/v1/messages")
#: The paid media routes and the kind of media each makes.
MEDIA_PATHS = {
    f"{prefix}/{path}": kind
    for prefix in ("/v1", "/api/v1")
    for path, kind in (("images/generations", "image"), ("audio/generations", "audio"), ("videos/generations", "video"))
}
_CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, priced request: the canonical upstream call and what the caller asked for."""

    call: Call
    quote: Quote
    api: str  # "chat" (OpenAI format) or "messages" (Anthropic format)
    include_usage: bool  # OpenAI stream_options.include_usage

    @property
    def model_id(self) -> str:
        return self.call.model.id


def api_of(path: str) -> str | None:
    """Which inbound API a path is: ``chat`` for ``.../chat/completions``, ``messages`` for ``.../messages``."""
    path = path.rstrip("/")
    if path.endswith("/chat/completions"):
        return CHAT
    if path.endswith("/v1/messages"):
        return MESSAGES
    return None


class Gateway:
    """Catalog + pools + the shared HTTP client. Create once per app; :meth:`aclose` on shutdown."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config = config if config is not None else GatewayConfig()
        self.catalog: Catalog = config.load_catalog()
        self.throttle = Throttle()
        # one aiohttp session for every upstream (config.http_client, else made on first use; benchmarks/README.md)
        self.pools = Pools(
            self.catalog,
            config.http_client,
            overrides=config.pools,
            env=config.env,
            timeouts=config.timeouts,
            default_retry_after=config.default_retry_after,
            endpoint_cooldown=config.endpoint_cooldown,
            throttle=self.throttle,
            bedrock=config.bedrock,
        )
        self.known_ids = [m.id for m in self.catalog if self.pools.available(m)] or list(self.catalog.models)

    def model(self, model_id: Any) -> ModelInfo:
        """The catalog entry, or :class:`UnknownModel` (400)."""
        if not isinstance(model_id, str) or not model_id:
            raise InvalidRequest("model is required: name one of the ids from GET /v1/models", param="model")
        model = self.catalog.get(model_id)
        if model is None:
            raise UnknownModel(model_id, self.known_ids)
        return model

    def available_models(self) -> list[ModelInfo]:
        """Models with at least one configured upstream endpoint (what ``/v1/models`` lists)."""
        return [m for m in self.catalog if self.pools.available(m)]

    def available_media(self) -> list[MediaModel]:
        """Media models with at least one configured upstream endpoint (listed in ``/v1/models`` too)."""
        return [m for m in self.catalog.media.values() if self.pools.available(m)]

    def prepare(self, api: str, body: Any) -> Prepared:
        """Validate and price a request body of ``api`` (``chat`` or ``messages``); raises ``GatewayError``."""
        if not isinstance(body, Mapping):
            raise InvalidRequest("the request body must be a JSON object")
        model = self.model(body.get("model"))
        native: Mapping[str, Any] | None = None
        if api == MESSAGES:
            quote = messages_quote(model, body)
            canonical = from_anthropic_request(body)
            native = body  # an Anthropic upstream gets it as sent (providers/anthropic.py)
            include_usage = False
        else:
            quote = chat_quote(model, body)
            _check_chat(body)
            canonical = dict(body)
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("stream must be true or false", param="stream")
        return Prepared(Call(model, canonical, quote.max_tokens, stream, native), quote, api, include_usage)

    def prepare_media(self, kind: str, body: Any) -> MediaCall:
        """Validate and price a media request (``image``, ``audio``, ``video``); raises ``GatewayError``."""
        return prepare_media(self.catalog, kind, body)

    def quote(self, path: str, body: Any) -> Quote:
        """The price of an inference request (``Quote.amount`` in atomic USDC, ``None`` = free).

        Raises :class:`~.errors.GatewayError` for a body the app refuses (unknown model, bad
        ``max_tokens``, ...): the app answers those itself, before any upstream call.
        """
        api = api_of(path)
        if api is None:
            raise InvalidRequest(f"{path} is not an inference endpoint")
        return self.prepare(api, body).quote

    def throttled(self, model_id: str) -> RateLimited | None:
        """The 429 to answer at once when every upstream of ``model_id`` is known to be rate-limited."""
        return self.throttle.get(model_id)

    async def aclose(self) -> None:
        await self.pools.upstream.aclose()


def _check_chat(body: Mapping[str, Any]) -> None:
    for i, message in enumerate(body["messages"]):
        if message["role"] not in _CHAT_ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(_CHAT_ROLES)}", param="messages")
    if body.get("n", 1) not in (1, None):
        raise InvalidRequest("n > 1 is not supported; send one request per completion", param="n")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
