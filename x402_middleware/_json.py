"""JSON for untrusted input: :func:`loads` refuses deep nesting *before* the C parser sees it.

The stdlib's C scanner recurses once per ``[``/``{`` and relies on the
interpreter's recursion limit to stop. Importing eth-account imports py_ecc,
which raises that limit to 100,000, so ``b"[" * 100_000`` overflows the C stack
and the process dies with SIGSEGV instead of raising ``RecursionError``. The
check here is independent of the recursion limit: it counts the nesting depth
outside string literals and raises :class:`~x402_middleware._exceptions.JSONTooDeepError`
above :data:`MAX_DEPTH`.

Cost: when the body holds fewer than :data:`MAX_DEPTH` brackets in total (almost
every real body) the check is two ``bytes.count`` calls; otherwise it is a C-speed
regex pass that drops string literals and one ``accumulate`` over the brackets left.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from ._exceptions import JSONTooDeepError

__all__ = ["MAX_DEPTH", "check_depth", "loads"]

#: The deepest nesting accepted. Real payloads (chat bodies with JSON-schema tools, x402 payloads,
#: JSON-RPC replies) stay under 30 levels; 256 levels of the C scanner use well under 100 KiB of stack,
#: safe even in a thread with a small stack whatever ``sys.getrecursionlimit()`` says.
MAX_DEPTH = 256

# A JSON string literal, unrolled so that the regex engine loops in C over runs of plain characters. An
# unterminated one runs to the end of the text: the parser fails inside it without nesting any further, and
# matching it whole keeps the scan linear (a retry at every escaped quote would be quadratic).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)

# Brackets are summed a chunk at a time so that a hostile body is refused at its first too-deep chunk.
_CHUNK = 1 << 16

# Opening brackets become 0x01 and closing ones 0xFF (-1 as a signed byte); every other byte is deleted.
_KEEP_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_OTHER_BYTES = bytes(b for b in range(256) if b not in b"[{]}")


def _too_deep(brackets: bytes, max_depth: int) -> bool:
    depth = 0
    view = memoryview(brackets).cast("b")
    for start in range(0, len(brackets), _CHUNK):
        chunk = view[start : start + _CHUNK]
        if max(accumulate(chunk, initial=depth)) > max_depth:
            return True
        depth += brackets.count(1, start, start + _CHUNK) - brackets.count(0xFF, start, start + _CHUNK)
    return False


def check_depth(raw: str | bytes | bytearray | memoryview, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`~x402_middleware._exceptions.JSONTooDeepError` if ``raw`` nests arrays/objects deeper than ``max_depth``.

    Brackets inside string literals (escaped quotes included) do not count, nor do
    those after an unterminated string's opening quote (the parser fails there
    without nesting further).
    """
    if isinstance(raw, str):
        if raw.count("[") + raw.count("{") <= max_depth:
            return
        # Brackets are ASCII, so dropping strings and then encoding (non-ASCII escaped away) keeps them all.
        data = _STRING.sub("", raw).encode("ascii", "ignore")
    else:
        data = bytes(raw)
        if data.count(b"[") + data.count(b"{") <= max_depth:
            return  # in UTF-16/32 every bracket still contributes a 0x5B/0x7B byte, so this never undercounts
        encoding = json.detect_encoding(data)
        if encoding not in ("utf-8", "utf-8-sig"):
            # A quote byte can sit inside a UTF-16/32 code unit, so strings are found in the decoded text.
            check_depth(data.decode(encoding, "replace"), max_depth)
            return
        data = _STRING_BYTES.sub(b"", data)
    if _too_deep(data.translate(_KEEP_BRACKETS, _OTHER_BYTES), max_depth):
        raise JSONTooDeepError(
            f"the JSON nests arrays/objects more than {max_depth} levels deep; at most {max_depth} are accepted "
            f"(flatten the structure or send the deep part as a string)"
        )


def loads(raw: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` for untrusted input: the nesting depth is checked first (see :func:`check_depth`).

    Raises :class:`~x402_middleware._exceptions.JSONTooDeepError` (a ``ValueError``) above
    ``max_depth``, and whatever ``json.loads`` raises otherwise (``ValueError``,
    including ``UnicodeDecodeError``). Keyword arguments go to ``json.loads``.
    """
    check_depth(raw, max_depth)
    return json.loads(raw, **kwargs)
