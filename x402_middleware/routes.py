"""Route patterns: which requests are paid for.

A pattern is ``"METHOD /path"`` or ``"/path"`` (any method). Path segments may
be ``{name}`` or ``:name`` (one segment, captured), ``*`` (one segment) or a
trailing ``/*`` or ``{name:path}`` (the rest, including nothing). Matching is
on the decoded path without the ASGI ``root_path``; methods are
case-insensitive and ``HEAD`` matches ``GET`` routes.

>>> RoutePattern.parse("GET /items/{id}").match("GET", "/items/7")
{'id': '7'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._exceptions import ConfigurationError

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"}
_PARAM = re.compile(r"^(?:\{(?P<b>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<conv>path))?\}|:(?P<c>[A-Za-z_][A-Za-z0-9_]*))$")


@dataclass(frozen=True, slots=True)
class RoutePattern:
    """A compiled ``"METHOD /path"`` pattern."""

    method: str
    path: str
    _exact: str | None = field(default=None, repr=False)
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> RoutePattern:
        parts = text.strip().split(None, 1)
        if len(parts) == 2:
            method, path = parts[0].upper(), parts[1].strip()
        else:
            method, path = "*", parts[0] if parts else ""
        if method not in _METHODS:
            raise ConfigurationError(f"route {text!r}: unknown method {method!r}; use e.g. 'GET /path' or '/path'")
        if not path.startswith("/"):
            raise ConfigurationError(f"route {text!r}: the path must start with '/'")
        segments = path.split("/")[1:]
        if all(not (_PARAM.match(s) or "*" in s) for s in segments):
            return cls(method, path, _exact=path)
        pieces: list[str] = []
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            m = _PARAM.match(seg)
            if seg == "*" and last:
                pieces.append(r"(?:/.*)?")
                continue
            if m and m.group("conv") == "path":
                if not last:
                    raise ConfigurationError(f"route {text!r}: {{{m.group('b')}:path}} must be the last segment")
                pieces.append(rf"(?:/(?P<{m.group('b')}>.*))?")
                continue
            if m:
                pieces.append(rf"/(?P<{m.group('b') or m.group('c')}>[^/]+)")
            elif seg == "*":
                pieces.append(r"/[^/]+")
            elif "*" in seg:
                pieces.append("/" + ".*".join(re.escape(p) for p in seg.split("*")))
            else:
                pieces.append("/" + re.escape(seg))
        return cls(method, path, _regex=re.compile("".join(pieces) + r"\Z"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method path`` matches, else ``None``."""
        if self.method != "*" and self.method != method and not (method == "HEAD" and self.method == "GET"):
            return None
        if self._exact is not None:
            return {} if path == self._exact or path == self._exact + "/" and self._exact != "/" else None
        assert self._regex is not None  # set by parse() whenever _exact is None
        m = self._regex.match(path)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}
