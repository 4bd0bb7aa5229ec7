"""Coinbase CDP's hosted x402 facilitator: per-request JWT Bearer auth for :class:`HTTPFacilitator`.

CDP authenticates every request with a short-lived JWT signed by your CDP API key
(https://docs.cdp.coinbase.com/api-reference/v2/authentication): header ``alg`` (``ES256`` for an EC
P-256 PEM key, ``EdDSA`` for a base64 Ed25519 key), ``kid`` = key id, ``typ`` = ``JWT`` and a random
``nonce``; claims ``sub`` = key id, ``iss`` = ``"cdp"``, ``iat``/``nbf`` = now, ``exp`` = now + 120 s and
``uris`` = ``["POST api.cdp.coinbase.com/platform/v2/x402/settle"]`` (method, host and path of that one
request). The JWT is built here by hand over ``cryptography`` (optional extra ``cdp``)::

    pip install 'x402_middleware[cdp]'

    facilitator = cdp_facilitator()          # reads CDP_API_KEY_ID and CDP_API_KEY_SECRET
    app = PaymentMiddleware(app, routes={"GET /weather": "$0.001"}, pay_to="0x...", facilitator=facilitator)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError
from .remote import HeaderFactory, HTTPFacilitator, SyncHTTPFacilitator

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:  # the optional extra is missing: explained when CDP auth is asked for
    serialization = None  # type: ignore[assignment]

CDP_FACILITATOR_URL = "https://api.cdp.coinbase.com/platform/v2/x402"
KEY_ID_ENV = "CDP_API_KEY_ID"
KEY_SECRET_ENV = "CDP_API_KEY_SECRET"
TOKEN_LIFETIME = 120  # seconds; CDP's own SDKs use 120 s


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_part(obj: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def _load_key(key_secret: str) -> Any:
    """An EC P-256 key from PEM or an Ed25519 key from base64 (32-byte seed, or seed + public key)."""
    if serialization is None:
        raise ConfigurationError(
            "CDP authentication needs the 'cryptography' package: pip install 'x402_middleware[cdp]'"
        )
    text = key_secret.strip().replace("\\n", "\n")  # keys pasted into .env files often carry literal "\n"
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigurationError(
                f"the CDP API key secret is not a readable unencrypted PEM key ({exc}); "
                "paste the privateKey of your CDP API key file as it is"
            ) from None
        if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
            raise ConfigurationError(
                "the CDP API key secret is a PEM key but not an EC P-256 key; CDP signs "
                "with ES256 (P-256) or EdDSA (Ed25519) keys"
            )
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) not in (32, 64):
        raise ConfigurationError(
            "the CDP API key secret is neither an EC PEM key nor a base64 Ed25519 key "
            "(64 bytes: seed + public key); copy the secret of your CDP API key exactly"
        )
    key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if len(raw) == 64 and raw[32:] != public:
        raise ConfigurationError(
            "the CDP Ed25519 key secret is inconsistent (its public half does not match its "
            "seed); copy the secret of your CDP API key exactly"
        )
    return key


def _signer(key: Any) -> tuple[str, Callable[[bytes], bytes]]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA", key.sign

    def es256(message: bytes) -> bytes:  # JWS wants raw r || s (RFC 7518 §3.4), not DER
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return "ES256", es256


def cdp_auth_headers(key_id: str, key_secret: str, *, lifetime: int = TOKEN_LIFETIME) -> HeaderFactory:
    """A per-request header factory for :class:`HTTPFacilitator`'s ``auth_headers``: a fresh CDP JWT each call.

    The key is parsed once, here (a malformed key raises :class:`~x402_middleware.ConfigurationError` at
    start-up); each call signs a token for exactly the method, host and path being requested.

    Example::

        headers = cdp_auth_headers("organizations/.../apiKeys/...", secret)
        headers("POST", "https://api.cdp.coinbase.com/platform/v2/x402/settle")
        # {'Authorization': 'Bearer eyJhbGciOiJFUzI1NiIs...'}
    """
    if not key_id:
        raise ConfigurationError("the CDP API key id is empty; pass it or set CDP_API_KEY_ID")
    alg, sign = _signer(_load_key(key_secret))

    def headers(method: str, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        now = int(time.time())
        header = {"alg": alg, "kid": key_id, "typ": "JWT", "nonce": secrets.token_hex(16)}
        claims = {
            "sub": key_id,
            "iss": "cdp",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "uris": [f"{method.upper()} {parts.netloc}{parts.path}"],
        }
        signing_input = f"{_json_part(header)}.{_json_part(claims)}"
        token = f"{signing_input}.{_b64url(sign(signing_input.encode('ascii')))}"
        return {"Authorization": f"Bearer {token}"}

    return headers


def _credentials(key_id: str | None, key_secret: str | None) -> HeaderFactory:
    key_id = key_id if key_id is not None else os.environ.get(KEY_ID_ENV)
    key_secret = key_secret if key_secret is not None else os.environ.get(KEY_SECRET_ENV)
    if not key_id or not key_secret:
        raise ConfigurationError(
            f"CDP's facilitator needs an API key: pass key_id and key_secret or set "
            f"{KEY_ID_ENV} and {KEY_SECRET_ENV} (create one at https://portal.cdp.coinbase.com)"
        )
    return cdp_auth_headers(key_id, key_secret)


def cdp_facilitator(
    key_id: str | None = None, key_secret: str | None = None, *, url: str = CDP_FACILITATOR_URL, **kwargs: Any
) -> HTTPFacilitator:
    """An :class:`HTTPFacilitator` for CDP's x402 facilitator, authenticated with your CDP API key.

    ``key_id``/``key_secret`` default to ``CDP_API_KEY_ID``/``CDP_API_KEY_SECRET``; other keyword
    arguments (``client``, ``timeout``, ``headers``) go to :class:`HTTPFacilitator`.

    Example::

        facilitator = cdp_facilitator(os.environ["CDP_API_KEY_ID"], os.environ["CDP_API_KEY_SECRET"])
    """
    return HTTPFacilitator(url, auth_headers=_credentials(key_id, key_secret), **kwargs)


def sync_cdp_facilitator(
    key_id: str | None = None, key_secret: str | None = None, *, url: str = CDP_FACILITATOR_URL, **kwargs: Any
) -> SyncHTTPFacilitator:
    """The blocking twin of :func:`cdp_facilitator` (a :class:`SyncHTTPFacilitator`) for WSGI apps."""
    return SyncHTTPFacilitator(url, auth_headers=_credentials(key_id, key_secret), **kwargs)
