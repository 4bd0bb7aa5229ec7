"""CDP facilitator auth: JWTs verified independently with ``cryptography``, and sent by real facilitator clients
to a real server on 127.0.0.1 that checks them (signature, claims, ``uris`` of the very request)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests._payments import decode, pay_v2
from tests._servers import uvicorn_server
from x402_middleware import ConfigurationError, FacilitatorError
from x402_middleware.facilitator import cdp_auth_headers, cdp_facilitator, sync_cdp_facilitator
from x402_middleware.facilitator.cdp import CDP_FACILITATOR_URL
from x402_middleware.models import parse_payment_payload, parse_requirements

KEY_ID = "organizations/0f1e2d3c/apiKeys/4b5a6978"
SETTLE_URL = "https://api.cdp.coinbase.com/platform/v2/x402/settle"
TX = "0x" + "ab" * 32


def ec_key() -> tuple[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def ed_key() -> tuple[str, Any]:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed + raw_public).decode(), public  # CDP's format: seed + public key


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_jwt(token: str, public_key: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a compact JWS with the public key (raises InvalidSignature); return (header, claims)."""
    head, body, sig = token.split(".")
    header, claims = json.loads(unb64(head)), json.loads(unb64(body))
    message, signature = f"{head}.{body}".encode(), unb64(sig)
    if header["alg"] == "ES256":
        assert len(signature) == 64  # JWS raw r || s, not DER
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    else:
        assert header["alg"] == "EdDSA"
        public_key.verify(signature, message)
    return header, claims


def bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


@pytest.mark.parametrize("make_key, alg", [(ec_key, "ES256"), (ed_key, "EdDSA")], ids=["es256", "eddsa"])
def test_token_verifies_independently_and_binds_the_request(make_key: Any, alg: str) -> None:
    secret, public = make_key()
    factory = cdp_auth_headers(KEY_ID, secret)
    before = int(time.time())
    header, claims = verify_jwt(bearer(dict(factory("POST", SETTLE_URL))), public)
    assert header["alg"] == alg and header["kid"] == KEY_ID and header["typ"] == "JWT"
    assert claims["sub"] == KEY_ID and claims["iss"] == "cdp"
    assert claims["uris"] == ["POST api.cdp.coinbase.com/platform/v2/x402/settle"]
    assert before <= claims["nbf"] <= int(time.time()) and claims["exp"] - claims["nbf"] == 120
    _, get = verify_jwt(bearer(dict(factory("get", f"{CDP_FACILITATOR_URL}/supported"))), public)
    assert get["uris"] == ["GET api.cdp.coinbase.com/platform/v2/x402/supported"]


def test_each_token_has_a_fresh_nonce_and_a_tampered_token_fails() -> None:
    secret, public = ec_key()
    factory = cdp_auth_headers(KEY_ID, secret)
    tokens = [bearer(dict(factory("POST", SETTLE_URL))) for _ in range(20)]
    nonces = {verify_jwt(t, public)[0]["nonce"] for t in tokens}
    assert len(nonces) == 20 and all(len(n) == 32 for n in nonces)
    head, body, sig = tokens[0].split(".")
    forged = json.loads(unb64(body)) | {"uris": ["POST api.cdp.coinbase.com/platform/v2/x402/verify"]}
    with pytest.raises(InvalidSignature):
        verify_jwt(f"{head}.{base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip('=')}.{sig}", public)
    _, other_public = ec_key()
    with pytest.raises(InvalidSignature):
        verify_jwt(tokens[0], other_public)


def test_pem_with_literal_newlines_as_in_env_files() -> None:
    secret, public = ec_key()
    factory = cdp_auth_headers(KEY_ID, secret.replace("\n", "\\n"))
    assert verify_jwt(bearer(dict(factory("POST", SETTLE_URL))), public)[0]["alg"] == "ES256"


@pytest.mark.parametrize(
    "secret",
    [
        "not a key",
        base64.b64encode(b"\x01" * 40).decode(),  # wrong length
        base64.b64encode(b"\x01" * 64).decode(),  # seed and public half do not belong together
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(  # EC, but not P-256
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode(),
    ],
)
def test_malformed_secrets_are_configuration_errors(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="CDP"):
        cdp_auth_headers(KEY_ID, secret)


def test_missing_credentials_say_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDP_API_KEY_ID", raising=False)
    monkeypatch.delenv("CDP_API_KEY_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="CDP_API_KEY_ID and CDP_API_KEY_SECRET"):
        cdp_facilitator()
    secret, _ = ed_key()
    monkeypatch.setenv("CDP_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("CDP_API_KEY_SECRET", secret)
    assert sync_cdp_facilitator().url == CDP_FACILITATOR_URL


# -- a real server that checks the token the way CDP does --------------------------------------------------------
def create() -> Starlette:
    """``uvicorn --factory tests.facilitator.test_cdp:create``: a facilitator that demands a valid CDP JWT."""
    keys = {
        alg: serialization.load_pem_public_key(pem.encode())
        for alg, pem in json.loads(os.environ["CDP_TEST_PUBLIC_KEYS"]).items()
    }
    key_id = os.environ["CDP_TEST_KEY_ID"]

    async def endpoint(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            header, claims = verify_jwt(token, keys[json.loads(unb64(token.split(".")[0]))["alg"]])
        except (InvalidSignature, ValueError, KeyError, AssertionError):
            return JSONResponse({"error": "invalid token"}, status_code=401)
        now = time.time()
        wanted = f"{request.method} {request.url.netloc}{request.url.path}"
        if (
            scheme != "Bearer"
            or header["kid"] != key_id
            or claims["sub"] != key_id
            or claims["iss"] != "cdp"
            or not claims["nbf"] - 5 <= now < claims["exp"]
            or claims["uris"] != [wanted]
        ):
            return JSONResponse({"error": "claims", "uris": claims["uris"], "wanted": wanted}, status_code=401)
        if request.url.path.endswith("/supported"):
            return JSONResponse({"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}]})
        if request.url.path.endswith("/verify"):
            return JSONResponse({"isValid": True, "payer": "0x" + "11" * 20})
        return JSONResponse({"success": True, "transaction": TX, "network": "eip155:8453", "payer": "0x" + "11" * 20})

    base = "/platform/v2/x402"
    return Starlette(
        routes=[
            Route(f"{base}/{name}", endpoint, methods=["GET", "POST"]) for name in ("verify", "settle", "supported")
        ]
    )


@pytest.fixture(scope="module")
def cdp_server() -> Iterator[tuple[str, dict[str, str]]]:
    """One server knowing one ES256 and one EdDSA key; yields its facilitator URL and the two secrets."""
    keys = {"ES256": ec_key(), "EdDSA": ed_key()}
    pems = {
        alg: public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for alg, (_, public) in keys.items()
    }
    env = {"CDP_TEST_PUBLIC_KEYS": json.dumps(pems), "CDP_TEST_KEY_ID": KEY_ID}
    with uvicorn_server("tests.facilitator.test_cdp:create", factory=True, env=env) as url:
        yield f"{url}/platform/v2/x402", {alg: secret for alg, (secret, _) in keys.items()}


@pytest.fixture(params=["ES256", "EdDSA"])
def server(cdp_server: tuple[str, dict[str, str]], request: pytest.FixtureRequest) -> tuple[str, str]:
    return cdp_server[0], cdp_server[1][request.param]


def _payment() -> tuple[Any, Any]:
    accept = {
        "scheme": "exact",
        "network": "eip155:8453",
        "amount": "1000",
        "payTo": "0x" + "22" * 20,
        "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    payload = decode(pay_v2({"x402Version": 2, "resource": {"url": "http://x/"}, "accepts": [accept]}))
    return parse_payment_payload(payload), parse_requirements(accept, 2)


@pytest.mark.anyio
async def test_async_facilitator_authenticates_every_call(server: tuple[str, str]) -> None:
    url, secret = server
    payload, requirements = _payment()
    facilitator = cdp_facilitator(KEY_ID, secret, url=url)
    try:
        assert (await facilitator.verify(payload, requirements)).is_valid
        settled = await facilitator.settle(payload, requirements)
        assert settled.success and settled.transaction == TX
        assert (await facilitator.supported())["kinds"][0]["network"] == "eip155:8453"
    finally:
        await facilitator.aclose()
    # The server really checks: no token, or a token for another path, is refused.
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{url}/settle", json={})).status_code == 401
        wrong = cdp_auth_headers(KEY_ID, secret)("POST", f"{url}/verify")
        refused = await client.post(f"{url}/settle", json={}, headers=dict(wrong))
        assert refused.status_code == 401 and refused.json()["error"] == "claims"


def test_sync_facilitator_authenticates_every_call(server: tuple[str, str]) -> None:
    url, secret = server
    payload, requirements = _payment()
    facilitator = sync_cdp_facilitator(KEY_ID, secret, url=url)
    try:
        assert facilitator.verify(payload, requirements).is_valid
        assert facilitator.settle(payload, requirements).transaction == TX
    finally:
        facilitator.close()
    other_secret, _ = ec_key()  # a key the server does not know
    stranger = sync_cdp_facilitator(KEY_ID, other_secret, url=url)
    try:
        with pytest.raises(FacilitatorError, match="401"):
            stranger.supported()
    finally:
        stranger.close()
