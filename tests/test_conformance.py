"""Acceptance: the external suite ``x402-conformance`` 1.6.0 (``x402conf``) against real servers on 127.0.0.1.

* ``x402conf resource`` (P1-P7, one unpaid GET) against the Starlette example (ASGI ``PaymentMiddleware``, uvicorn)
  and the Flask example (``PaymentWSGIMiddleware``, gunicorn);
* ``x402conf live`` (S0-S4, ``GET /supported``) against ``python -m x402_middleware.facilitator`` on a dev chain.

Both resource servers point at that facilitator process, as they would in production. The example gateway is not
probed: its paid routes are POST-only and priced from the body, and P1 grades an unpaid GET (a GET answers 405).
The fault-injection checks R0-R24 live in the npm package ``x402-conformance-svm``, which the registry does not serve
(E404), so they cannot run here. Run by hand: see "Conformance" in README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from x402conf.pytest_plugin import X402

from tests._chain import start_dev_chain
from tests._payments import decode
from tests._servers import ROOT, process_with_url, uvicorn_server

# The console script installed next to this interpreter by the test extra (x402-conformance[pytest]==1.6.0).
X402CONF = str(Path(sys.executable).with_name("x402conf"))
NETWORK = "eip155:84532"  # Base Sepolia, the dev chain's network
GUNICORN = [
    sys.executable,
    "-m",
    "gunicorn",
    "-b",
    "127.0.0.1:0",
    "--threads",
    "2",
    "--no-control-socket",
    "--graceful-timeout",
    "1",
]
# P6 and P7 are graded as warnings by x402conf (a header budget and an optional field), the rest as errors.
RESOURCE_CHECKS = {
    "P1": "error",
    "P2": "error",
    "P3": "error",
    "P4": "error",
    "P5": "error",
    "P6": "warning",
    "P7": "warning",
}
RESOURCE_SERVERS = ("starlette", "flask")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Our facilitator on a Base Sepolia dev chain, and the two example apps charging through it."""
    chain = start_dev_chain("base-sepolia", payers=1, facilitators=1)
    try:
        with ExitStack() as stack:
            facilitator = stack.enter_context(
                process_with_url(
                    [
                        sys.executable,
                        "-m",
                        "x402_middleware.facilitator",
                        "--rpc-url",
                        chain.rpc_url,
                        "--port",
                        "0",
                        "--network",
                        NETWORK,
                        "--key",
                        chain.facilitator_keys[0],
                    ]
                )
            )
            env = {
                "X402_FACILITATOR_URL": facilitator,
                "X402_PAY_TO": chain.pay_to,
                "X402_NETWORK": NETWORK,
                "X402_PRICE": "$0.0025",
            }
            yield {
                "facilitator": facilitator,
                "starlette": stack.enter_context(uvicorn_server("examples.starlette_app:app", env=env)),
                "flask": stack.enter_context(process_with_url([*GUNICORN, "examples.flask_app:app"], env=env)),
            }
    finally:
        chain.stop()


def x402conf(*args: str) -> tuple[int, dict[str, Any]]:
    """Run the x402conf CLI; return its exit code and the JSON document it prints on stdout."""
    # check=False: exit code 1 means "some checks failed", a result the tests read from the JSON
    proc = subprocess.run([X402CONF, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_id(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The checks of one target keyed by their id ("P1", "S2", ...)."""
    return {c["check"].split(" ")[0]: c for c in run["checks"]}


@pytest.mark.parametrize("name", RESOURCE_SERVERS)
def test_unpaid_get_passes_p1_to_p7(name: str, servers: dict[str, str]) -> None:
    url = f"{servers[name]}/weather"
    code, doc = x402conf("resource", "--fail-on-error", url)
    (run,) = doc["results"]
    checks = by_id(run)
    assert (code, run["target"], run["http"]) == (0, url, 402)
    assert {cid: (c["pass"], c["severity"]) for cid, c in checks.items()} == {
        cid: (True, sev) for cid, sev in RESOURCE_CHECKS.items()
    }
    # V2 in the header (our v1 JSON body is for v1 clients; x402conf reads the header first), one EVM exact offer.
    assert checks["P2"]["detail"]["found_in"] == "PAYMENT-REQUIRED header"
    assert checks["P3"]["detail"] == {"x402Version": 2, "problems": []}
    assert checks["P4"]["detail"] == {"accepts": 1, "problems": []}
    assert checks["P6"]["detail"]["bytes"] < 1024


def test_fail_on_error_gate_fails_a_route_that_does_not_charge(servers: dict[str, str]) -> None:
    """Control: the same invocation exits 1 and fails P1 on the free route, so the test above can fail."""
    code, doc = x402conf("resource", "--fail-on-error", f"{servers['starlette']}/free")
    (run,) = doc["results"]
    checks = by_id(run)
    assert code == 1 and list(checks) == ["P1"]  # x402conf stops grading when the answer is not a 402
    assert checks["P1"]["pass"] is False and checks["P1"]["detail"] == {"http": 200}


def test_plugin_fixture_grades_the_asgi_route(x402: X402, servers: dict[str, str]) -> None:
    """The auto-registered pytest plugin (fixture ``x402``) runs the same P-checks in-process."""
    report = x402.check_payment_required(f"{servers['starlette']}/weather")
    x402.assert_passed(report)
    assert report["via"] == "pytest" and report["summary"] == {
        "checks": 7,
        "failed": 0,
        "failed_ids": [],
        "unsupported": False,
    }


def test_facilitator_supported_passes_s0_to_s4(servers: dict[str, str]) -> None:
    url = servers["facilitator"]
    code, doc = x402conf("live", "--fail-on-error", url)
    (run,) = doc["results"]
    checks = by_id(run)
    # x402conf reports S0 (GET /supported answers 200 with a JSON object) only when it fails; on success it goes on
    # to grade the body. So S0 passed iff the status was 200 and S1-S4 were graded.
    # v2 exact and upto (Permit2, with extra.facilitatorAddress) and v1 exact
    assert (code, run["target"], run["http"], run["kinds_total"]) == (0, url, 200, 3)
    assert {cid: c["pass"] for cid, c in checks.items()} == {"S1": True, "S2": True, "S3": True, "S4": True}
    assert checks["S1"]["detail"]["graded_as"] == "v2"
    assert (checks["S2"]["detail"]["v2_kinds"], checks["S2"]["detail"]["v1_kinds"]) == (2, 1)
    # Our own cross-check: the facilitator advertises the (scheme, network) each resource server charges in.
    supported = httpx.get(f"{url}/supported").json()
    kinds = {(k["scheme"], k["network"]) for k in supported["kinds"] if k["x402Version"] == 2}
    for name in RESOURCE_SERVERS:
        challenge = decode(httpx.get(f"{servers[name]}/weather").headers["payment-required"])
        assert {(a["scheme"], a["network"]) for a in challenge["accepts"]} <= kinds


def test_live_gate_fails_a_server_without_supported(servers: dict[str, str]) -> None:
    """Control: a resource server has no GET /supported (404), so S0 fails and the CLI exits 1."""
    code, doc = x402conf("live", "--fail-on-error", servers["starlette"])
    (run,) = doc["results"]
    checks = by_id(run)
    assert code == 1 and list(checks) == ["S0"]
    assert checks["S0"]["pass"] is False and checks["S0"]["detail"]["http"] == 404
