"""``x402_middleware._json``: the nesting check in front of every parse of untrusted JSON."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from typing import Any

import pytest

from x402_middleware._exceptions import JSONTooDeepError, MalformedPaymentError, UnpriceableRequestError
from x402_middleware._flow import parse_json_body
from x402_middleware._headers import decode_header
from x402_middleware._json import MAX_DEPTH, check_depth, loads

# The condition being defended: a process whose recursion limit was raised (py_ecc < 8 did it on import; any library
# may), where the C JSON parser would overflow the C stack before raising RecursionError.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def mixed(depth: int) -> str:
    half = depth // 2
    return '[{"k":' * half + "[" * (depth - 2 * half) + "0" + "]" * (depth - 2 * half) + "}]" * half


def test_the_recursion_limit_is_the_raised_one() -> None:
    assert sys.getrecursionlimit() >= 100_000  # otherwise these tests would not test the dangerous case


@pytest.mark.parametrize("shape", [arrays, objects, mixed])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_depth_at_the_limit_parses_and_one_more_is_refused(shape: Any, as_bytes: bool) -> None:
    ok, deep = shape(MAX_DEPTH), shape(MAX_DEPTH + 1)
    assert loads(ok.encode() if as_bytes else ok) == json.loads(ok)
    with pytest.raises(JSONTooDeepError, match=f"more than {MAX_DEPTH} levels"):
        loads(deep.encode() if as_bytes else deep)


def test_the_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads(arrays(MAX_DEPTH + 1))


def test_a_smaller_max_depth() -> None:
    assert loads("[[[]]]", max_depth=3) == [[[]]]
    with pytest.raises(JSONTooDeepError):
        loads("[[[[]]]]", max_depth=3)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_brackets_inside_strings_do_not_count(as_bytes: bool) -> None:
    inside = "[{" * 5000
    doc = json.dumps({"text": inside, "more": ["]}" * 5000, 'say \\"[[[[\\" " [[[[', "\\"]})
    raw: str | bytes = doc.encode() if as_bytes else doc
    assert loads(raw) == json.loads(doc)


def test_an_escaped_backslash_ends_the_string_so_the_brackets_after_it_count() -> None:
    doc = '["\\\\",' + arrays(MAX_DEPTH) + "]"  # ["\\", [[[...]]]] : the quote after \\ closes the string
    with pytest.raises(JSONTooDeepError):
        loads(doc)
    assert loads('["\\\\",' + arrays(MAX_DEPTH - 1) + "]")[0] == "\\"


def test_non_ascii_strings_with_brackets() -> None:
    doc = json.dumps({"t": "ünïcødé [[[ " * 200 + "\u2200\u5b00"}, ensure_ascii=False)
    assert loads(doc.encode()) == json.loads(doc)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_bodies(encoding: str) -> None:
    fine = json.dumps({"t": "\u2200[" * 400, "a": [[1]]}, ensure_ascii=False).encode(encoding)
    assert loads(fine)["a"] == [[1]]
    with pytest.raises(JSONTooDeepError):
        loads(arrays(MAX_DEPTH + 1).encode(encoding))


def test_an_unterminated_string_is_plain_invalid_json_and_linear_to_scan() -> None:
    hostile = b"[" * (MAX_DEPTH - 1) + b'"' + b'\\"[' * 300_000  # ~900 KB of escaped quotes, never closed
    started = time.perf_counter()
    with pytest.raises(ValueError) as info:
        loads(hostile)
    assert not isinstance(info.value, JSONTooDeepError)  # the parser fails inside the string, nesting no deeper
    assert time.perf_counter() - started < 2.0  # a retry at every escaped quote would take minutes


def test_keyword_arguments_reach_json_loads() -> None:
    from decimal import Decimal

    assert loads('{"p": 1.5}', parse_float=Decimal) == {"p": Decimal("1.5")}


@pytest.mark.parametrize("depth", [10_000, 100_000, 1_000_000])
def test_hostile_depths_are_refused_without_parsing(depth: int) -> None:
    with pytest.raises(JSONTooDeepError):
        check_depth(arrays(depth).encode())


def test_the_limit_is_safe_in_a_thread_with_a_small_stack() -> None:
    # A worker thread of a WSGI server may have far less than the main thread's 8 MiB; 256 KiB is a small one.
    results: list[Any] = []
    old = threading.stack_size(256 * 1024)
    try:
        worker = threading.Thread(target=lambda: results.append(loads(mixed(MAX_DEPTH).encode())))
        worker.start()
        worker.join(30)
    finally:
        threading.stack_size(old)
    assert results == [json.loads(mixed(MAX_DEPTH))]


def test_a_pricing_body_too_deep_is_a_400_with_a_reason() -> None:
    with pytest.raises(UnpriceableRequestError) as info:
        parse_json_body(arrays(100_000).encode())
    assert info.value.status_code == 400 and info.value.reason == "request_body_too_deep"
    assert parse_json_body(b"not json [[[") is None and parse_json_body(b"") is None
    assert parse_json_body(b'{"model": "m"}') == {"model": "m"}


def test_a_payment_header_too_deep_is_malformed() -> None:
    header = base64.b64encode(('{"x402Version": 2, "p": ' + arrays(300) + "}").encode())
    with pytest.raises(MalformedPaymentError, match="more than 256 levels"):
        decode_header(header)
