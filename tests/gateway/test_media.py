"""Media endpoints against the emulator: real files, async video jobs, catalog prices, faults and settlement."""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from examples.gateway import Gateway, RateLimit
from examples.gateway.emulator import EmulatorServer
from examples.gateway.media.requests import prepare_media
from examples.gateway.service import MEDIA_PATHS
from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, pay_v2
from x402_middleware import PaymentMiddleware, RouteConfig

from .conftest import CONTROL, client_for, emulator_requests, set_fault

pytestmark = pytest.mark.anyio

IMAGE = {
    "model": "openai/gpt-image-1",
    "prompt": "a lighthouse at dawn",
    "n": 2,
    "size": "1024x1536",
    "quality": "high",
}
MUSIC = {"model": "elevenlabs/music-v1", "prompt": "calm piano", "duration": 20}
VIDEO = {"model": "openai/sora-2", "prompt": "waves on a beach", "seconds": 8}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (
        kind == b"IHDR"
        and zlib.crc32(data[12 : 16 + length]) == struct.unpack(">I", data[16 + length : 20 + length])[0]
    )
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chunks(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        kinds.append(kind)
        at += 12 + length
    return kinds


def _control(emulator: EmulatorServer, **body: Any) -> None:
    CONTROL.post(emulator.url + "/_control", json=body).raise_for_status()


def test_prices_are_catalog_data(make_app: Callable[..., Starlette]) -> None:
    catalog = make_app().state.gateway.catalog
    # 2 x $0.25 (1024x1536 high) + $0.001 gateway fee; 20 s x $0.005 + fee; 8 s x $0.10 + fee
    assert prepare_media(catalog, "image", IMAGE).quote.amount == 501_000
    assert prepare_media(catalog, "audio", MUSIC).quote.amount == 101_000
    video = prepare_media(catalog, "video", VIDEO).quote
    assert (video.amount, video.description) == (801_000, "Sora 2: 8 s video")
    tts = prepare_media(catalog, "audio", {"model": "openai/gpt-4o-mini-tts", "input": "hi", "voice": "nova"})
    assert tts.quote.amount == 16_000 and tts.body["voice"] == "nova"  # flat $0.015 + fee


async def test_images_are_real_pngs_as_b64_json_or_url(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/images/generations", json={**IMAGE, "response_format": "b64_json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()["data"]
    assert len(data) == 2 and all(_png_size(base64.b64decode(d["b64_json"])) == (16, 16) for d in data)
    assert all("url" not in d for d in data)  # asked for b64_json: the upstream's answer as it is
    # No response_format (BlockRun's SDK): every item also has the url its ImageData requires, here a data URI.
    r = await client.post("/v1/images/generations", json=IMAGE)
    blockrun = r.json()
    assert blockrun["model"] == IMAGE["model"]
    for item in blockrun["data"]:
        assert item["url"] == "data:image/png;base64," + item["b64_json"]
    r = await client.post("/api/v1/images/generations", json={**IMAGE, "n": 1, "response_format": "url"})
    url = r.json()["data"][0]["url"]
    image = CONTROL.get(url)  # the upstream's own URL, passed through
    assert image.headers["content-type"] == "image/png" and _png_size(image.content) == (16, 16)


async def test_audio_is_a_real_wav_or_base64_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/audio/generations", json={**MUSIC, "response_format": "wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"  # the upstream's bytes
    with wave.open(io.BytesIO(r.content)) as clip:
        assert clip.getnchannels() == 1 and clip.getsampwidth() == 2 and clip.getnframes() > 1000
    r = await client.post("/api/v1/audio/generations", json={**MUSIC, "response_format": "b64_json"})
    item = r.json()["data"][0]
    assert item["duration_seconds"] == 20 and base64.b64decode(item["b64_json"])[:4] == b"RIFF"
    assert "url" not in item and r.json()["model"] == "music_v1"  # the upstream's JSON as it is
    r = await client.post(
        "/api/v1/audio/generations", json=MUSIC
    )  # BlockRun's MusicClient: {created, model, data[].url}
    track = r.json()["data"][0]
    assert r.json()["model"] == MUSIC["model"] and track["url"] == "data:audio/wav;base64," + track["b64_json"]


async def test_a_video_job_runs_then_completes_with_a_file(client: httpx.AsyncClient, emulator: EmulatorServer) -> None:
    _control(emulator, video_delay=0.3)
    r = await client.post("/v1/videos/generations", json=VIDEO)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["poll_url"] == f"/api/v1/videos/generations/{job['id']}"
    running = await client.get(job["poll_url"])
    assert running.status_code == 202 and running.json()["status"] == "in_progress"
    for _ in range(50):
        done = await client.get(job["poll_url"])
        if done.status_code == 200:
            break
        await _sleep(0.05)
    assert done.json()["status"] == "completed" and done.json()["model"] == VIDEO["model"]
    url = done.json()["data"][0]["url"]
    assert url.startswith("http://gateway.test/api/v1/videos/generations/")
    file = await client.get(url)
    assert file.status_code == 200 and file.headers["content-type"] == "image/apng"
    assert _chunks(file.content).count(b"fcTL") == 4 and b"acTL" in _chunks(file.content)


async def test_a_job_that_fails_is_reported_failed(client: httpx.AsyncClient, emulator: EmulatorServer) -> None:
    _control(emulator, video_delay=0)
    set_fault(emulator, "job-fails", model="sora-2", times=1)
    r = await client.post("/v1/videos/generations", json=VIDEO)
    assert r.status_code == 202
    done = await client.get(r.json()["poll_url"])
    assert done.status_code == 200 and done.json()["status"] == "failed"
    assert done.json()["error"]["code"] == "JOB_FAILED"
    assert (await client.get(r.json()["poll_url"] + "/content")).status_code == 404  # no file for a failed job


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/images/generations", {**IMAGE, "size": "999x999"}, "size"),
        ("/v1/images/generations", {**IMAGE, "n": 5}, "n"),
        ("/v1/images/generations", {**IMAGE, "quality": "ultra"}, "quality"),
        ("/v1/images/generations", {**IMAGE, "prompt": ""}, "prompt"),
        ("/v1/videos/generations", {**VIDEO, "seconds": 5}, "seconds"),
        ("/v1/audio/generations", {**MUSIC, "duration": 301}, "seconds"),
        ("/v1/audio/generations", {**MUSIC, "voice": "nobody"}, "voice"),
        ("/v1/audio/generations", {**MUSIC, "response_format": "mp3"}, "response_format"),
    ],
)
async def test_bad_requests_are_400_before_any_upstream_call(
    client: httpx.AsyncClient, emulator: EmulatorServer, path: str, body: dict[str, Any], param: str
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert emulator_requests(emulator) == 0


async def test_unknown_and_wrong_kind_models(client: httpx.AsyncClient) -> None:
    for body in ({**IMAGE, "model": "nope/nope"}, {**IMAGE, "model": "openai/sora-2"}):
        r = await client.post("/v1/images/generations", json=body)
        assert r.status_code == 400 and r.json()["error"].startswith("Unknown model")
    assert (await client.get("/v1/videos/generations/vgen_bogus")).status_code == 404


async def test_faults_fail_over_rate_limit_and_time_out(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    async with client_for(make_app(endpoints=("a", "b"))) as c:
        set_fault(emulator, "500", endpoint="a", times=1)
        r = await c.post("/v1/images/generations", json=IMAGE)
        assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "b"
        set_fault(emulator, "429", retry_after=9, model="sora-2")
        r = await c.post("/v1/videos/generations", json=VIDEO)
        assert r.status_code == 429 and r.headers["retry-after"] == "9"
    async with client_for(make_app()) as c:
        set_fault(emulator, "timeout", delay=1, model="music_v1", times=1)
        r = await c.post("/v1/audio/generations", json=MUSIC)
        assert r.status_code == 504 and r.json()["code"] == "TIMEOUT"


async def test_listings_and_their_rate_limit(make_app: Callable[..., Starlette]) -> None:
    app = make_app(catalog_rate_limit=RateLimit(5, 3600.0))
    async with client_for(app) as c:
        images = (await c.get("/v1/images/models")).json()["data"]
        videos = (await c.get("/api/v1/video/models")).json()["data"]
        audio = (await c.get("/v1/audio/models")).json()["data"]
        voices = (await c.get("/v1/audio/voices")).json()["voices"]
        assert (await c.get("/v1/images/models")).status_code == 200
        limited = await c.get("/v1/audio/voices")
        assert (await c.get("/v1/models")).status_code == 200  # the chat catalog keeps its own count
    assert {m["id"] for m in images} == {"openai/gpt-image-1", "google/nano-banana"}
    assert {m["type"] for m in videos} == {"video"} and {m["type"] for m in audio} == {"audio"}
    gpt_image = next(m for m in images if m["id"] == "openai/gpt-image-1")
    assert gpt_image["pricing"]["per_image"]["1024x1024"]["high"] == 0.167
    assert {v["id"] for v in voices} >= {"alloy", "nova"}
    assert limited.status_code == 429 and "retry-after" in limited.headers


def _with_payment(facilitator: FakeFacilitator) -> Callable[[ASGIApp, Gateway], ASGIApp]:
    def wrap(app: ASGIApp, gateway: Gateway) -> ASGIApp:
        from examples.gateway.pricing import x402_price_policy

        policy = x402_price_policy(gateway)
        routes = {f"POST {p}": RouteConfig(price=policy, price_body=True) for p in MEDIA_PATHS}
        return PaymentMiddleware(app, routes=routes, pay_to=PAY_TO, network="eip155:84532", facilitator=facilitator)

    return wrap


@pytest.mark.parametrize(("path", "body"), [("/v1/images/generations", IMAGE), ("/api/v1/videos/generations", VIDEO)])
async def test_paid_media_settles_only_when_the_upstream_accepted(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, path: str, body: dict[str, Any]
) -> None:
    facilitator = FakeFacilitator()
    async with client_for(make_app(wrap=_with_payment(facilitator))) as c:
        challenge = await c.post(path, json=body)
        assert challenge.status_code == 402 and emulator_requests(emulator) == 0
        required = decode(challenge.headers["payment-required"])
        quote = prepare_media(make_app().state.gateway.catalog, MEDIA_PATHS[path], body).quote
        assert required["accepts"][0]["amount"] == str(quote.amount)
        assert required["resource"]["description"] == quote.description
        signature = pay_v2(required)
        set_fault(emulator, "503", times=1)  # the upstream fails: a 5xx, nothing settled, the payment stays usable
        failed = await c.post(path, json=body, headers={"PAYMENT-SIGNATURE": signature})
        assert failed.status_code >= 500 and facilitator.settled == []
        r = await c.post(path, json=body, headers={"PAYMENT-SIGNATURE": signature})
        assert r.status_code in (200, 202) and decode(r.headers["payment-response"])["success"] is True
    assert len(facilitator.settled) == 1 and facilitator.settled[0][1].amount == quote.amount


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
