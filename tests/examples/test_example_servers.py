"""Every example as a real server process on 127.0.0.1, configured only through its environment, paid by
X402Auth over HTTP and settled on the dev chain through a real facilitator process (HTTPFacilitator /
SyncHTTPFacilitator over HTTP)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests._payments import decode
from tests._servers import process_with_url, uvicorn_server
from x402_middleware import X402Auth, settlement_of
from x402_middleware.devchain import DevChain

GUNICORN = [
    sys.executable,
    "-m",
    "gunicorn",
    "-b",
    "127.0.0.1:0",
    "--threads",
    "4",
    "--no-control-socket",
    "--graceful-timeout",
    "1",
]
SERVERS = {
    "starlette": ("uvicorn", "examples.starlette_app:app"),
    "fastapi": ("uvicorn", "examples.fastapi_app:app"),
    "flask": ("gunicorn", "examples.flask_app:app"),
    "django-asgi": ("uvicorn", "examples.django_app.asgi:application"),
    "django-wsgi": ("gunicorn", "examples.django_app.wsgi:application"),
}


@pytest.fixture(scope="module")
def servers(example_chain: DevChain, facilitator_url: str) -> Iterator[dict[str, str]]:
    chain = example_chain
    with ExitStack() as stack:
        env = {
            "X402_FACILITATOR_URL": facilitator_url,
            "X402_PAY_TO": chain.pay_to,
            "X402_NETWORK": "eip155:84532",
            "X402_PRICE": "$0.0025",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
        }  # the test process set its own
        urls: dict[str, str] = {}
        errors: list[BaseException] = []

        def start(name: str) -> None:  # in parallel: each process imports its framework at the same time
            kind, target = SERVERS[name]
            cm = (
                uvicorn_server(target, env=env, extra_args=["--lifespan", "off"] if "django" in name else [])
                if kind == "uvicorn"
                else process_with_url([*GUNICORN, target], env=env)
            )
            try:
                urls[name] = stack.enter_context(cm)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(name,)) for name in SERVERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        yield urls


@pytest.mark.parametrize("name", list(SERVERS))
def test_example_server_is_configured_from_env_and_settles_on_chain(
    name: str, servers: dict[str, str], example_chain: DevChain
) -> None:
    chain, url = example_chain, servers[name]
    payer = chain.payer_keys[list(SERVERS).index(name) % len(chain.payer_keys)]
    with httpx.Client(base_url=url) as c:
        assert c.get("/free").json() == {"message": "this one is free"}
        challenge = decode(c.get("/weather").headers["payment-required"])
    (accept,) = challenge["accepts"]
    assert (accept["amount"], accept["network"], accept["payTo"]) == ("2500", "eip155:84532", chain.pay_to)
    assert challenge["resource"]["url"] == f"{url}/weather"
    before = chain.balance_of(chain.pay_to)
    auth = X402Auth(payer, max_amount_per_payment="$0.01")
    with httpx.Client(base_url=url, auth=auth) as c:
        r = c.get("/weather")
    assert r.status_code == 200 and r.json()["amount"] == 2500 and auth.spent == 2500
    settlement = settlement_of(r)
    assert settlement is not None and settlement.success
    assert chain.rpc("eth_getTransactionReceipt", settlement.transaction)["status"] == "0x1"
    assert chain.balance_of(chain.pay_to) - before == 2500
