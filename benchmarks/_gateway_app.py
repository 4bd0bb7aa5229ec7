"""uvicorn factory for ``benchmarks/gateway.py``: the example gateway pointed at an upstream emulator process.

Configured only by the environment, so the benchmark can serve it as its own pinned process::

    GATEWAY_BENCH_UPSTREAM=http://127.0.0.1:PORT .venv/bin/python -m uvicorn benchmarks._gateway_app:create --factory

* ``GATEWAY_BENCH_UPSTREAM`` (required): the emulator's URL; every catalog pool points at it (``emulator_pools``).
* ``GATEWAY_BENCH_PAYMENT``: ``none`` (default: ``create_app``, no payment layer), ``instant`` (``create_paid_app``
  with the zero-latency in-process facilitator of ``_fixtures``, to isolate the gateway's own cost) or ``onchain``
  (``create_paid_app`` with :class:`~x402_middleware.facilitator.OnChainFacilitator` settling on a dev chain), or
  ``usage`` (the same in usage billing: the 402 also offers ``upto``, each call is charged its reported usage).
* ``GATEWAY_BENCH_NETWORK``, ``GATEWAY_BENCH_PAY_TO``: the 402's network and recipient (paid modes).
* ``GATEWAY_BENCH_RPC_URL``, ``GATEWAY_BENCH_SIGNERS``: the dev chain's RPC URL and how many of its derived
  facilitator keys pay gas (``onchain``; the keys are :func:`~x402_middleware.devchain.derived_key` test keys).
* ``GATEWAY_BENCH_LOG``: a file the per-request JSON log line goes to (``/dev/null`` by default, so the line is
  still built and written as when the gateway runs with ``--log-level info``); empty = request log disabled.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for ``_fixtures`` when imported as benchmarks._gateway_app


def create() -> Any:
    """The gateway app described by the environment (see the module docstring)."""
    from examples.gateway.app import create_app
    from examples.gateway.catalog import load_catalog
    from examples.gateway.config import GatewayConfig, emulator_pools

    log_file = os.environ.get("GATEWAY_BENCH_LOG", os.devnull)
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(message)s"))
        gateway_log = logging.getLogger("examples.gateway")
        gateway_log.addHandler(handler)
        gateway_log.setLevel(logging.INFO)
    catalog = load_catalog()
    config = GatewayConfig(catalog=catalog, pools=emulator_pools(os.environ["GATEWAY_BENCH_UPSTREAM"], catalog))
    mode = os.environ.get("GATEWAY_BENCH_PAYMENT", "none")
    if mode == "none":
        return create_app(config)
    from dataclasses import replace

    from examples.gateway.paid import create_paid_app

    facilitator = _facilitator("onchain" if mode == "usage" else mode)
    return create_paid_app(
        replace(config, billing="usage") if mode == "usage" else config,
        pay_to=os.environ["GATEWAY_BENCH_PAY_TO"],
        facilitator=facilitator,
        network=os.environ["GATEWAY_BENCH_NETWORK"],
        facilitator_address=getattr(facilitator, "address", None),
    )


def _facilitator(mode: str) -> Any:
    if mode == "instant":
        from _fixtures import InstantFacilitator

        return InstantFacilitator()
    if mode == "onchain":
        from x402_middleware.devchain import derived_key
        from x402_middleware.facilitator import OnChainFacilitator

        # DevChain(facilitators=n) funds exactly these keys with gas.
        signers = int(os.environ.get("GATEWAY_BENCH_SIGNERS", "4"))
        keys = [derived_key(f"facilitator {i}") for i in range(signers)]
        return OnChainFacilitator(
            os.environ["GATEWAY_BENCH_RPC_URL"], keys, network=os.environ["GATEWAY_BENCH_NETWORK"]
        )
    raise SystemExit(f"GATEWAY_BENCH_PAYMENT must be none, instant, onchain or usage, not {mode!r}")
