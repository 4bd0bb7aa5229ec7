"""An upstream endpoint failed before anything was forwarded: what kind of failure, and may the pool move on."""

from __future__ import annotations

#: Failure kinds. All but ``client`` let the pool try the next endpoint.
RATE_LIMITED, SERVER, TIMEOUT, CONNECT, AUTH, PROTOCOL, CLIENT = (
    "rate_limited",
    "server",
    "timeout",
    "connect",
    "auth",
    "protocol",
    "client",
)


class UpstreamFailure(Exception):
    """One endpoint failed before anything was forwarded. ``retry_after`` is in seconds when the upstream said so."""

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, retry_after: int | None = None, endpoint: str = ""
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.endpoint = endpoint

    @property
    def retryable(self) -> bool:
        return self.kind != CLIENT

    def __repr__(self) -> str:
        return f"UpstreamFailure({self.kind!r}, {self.message!r}, status={self.status}, endpoint={self.endpoint!r})"


__all__ = ["AUTH", "CLIENT", "CONNECT", "PROTOCOL", "RATE_LIMITED", "SERVER", "TIMEOUT", "UpstreamFailure"]
