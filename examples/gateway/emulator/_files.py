"""Real, tiny media files for the emulator, made with the standard library: PNG, WAV and an animated PNG.

No encoder is installed for video, so a finished video job's file is an animated PNG (APNG, the PNG spec's
``acTL``/``fcTL``/``fdAT`` chunks): a real multi-frame file any browser plays, a few hundred bytes long::

    png(16, 16, (255, 0, 0))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from collections.abc import Sequence

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB = tuple[int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB


def _pixels(width: int, height: int, color: RGB) -> bytes:
    # A diagonal gradient towards ``color``; every row starts with filter type 0 (None).
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            f = (x + y + 2) / (width + height)
            row += bytes(int(c * f) for c in color)
        rows.append(bytes(row))
    return zlib.compress(b"".join(rows), 9)


def png(width: int, height: int, color: RGB) -> bytes:
    """A ``width`` x ``height`` RGB PNG."""
    return _SIGNATURE + _ihdr(width, height) + _chunk(b"IDAT", _pixels(width, height, color)) + _chunk(b"IEND", b"")


def apng(width: int, height: int, colors: Sequence[RGB], delay_ms: int = 250) -> bytes:
    """An animated PNG with one frame per color, looping forever."""
    out = [_SIGNATURE, _ihdr(width, height), _chunk(b"acTL", struct.pack(">II", len(colors), 0))]
    sequence = 0
    for i, color in enumerate(colors):
        control = struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, delay_ms, 1000, 0, 0)
        out.append(_chunk(b"fcTL", control))
        sequence += 1
        data = _pixels(width, height, color)
        if i == 0:
            out.append(_chunk(b"IDAT", data))  # the first frame is also the still image
        else:
            out.append(_chunk(b"fdAT", struct.pack(">I", sequence) + data))
            sequence += 1
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def wav(seconds: float, frequency: float, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / rate))) for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def color_of(text: str) -> RGB:
    """A stable color for a prompt, so the same request gets the same file."""
    digest = zlib.crc32(text.encode("utf-8", "surrogatepass"))
    return (64 + digest % 192, 64 + (digest >> 8) % 192, 64 + (digest >> 16) % 192)
