"""uvicorn factory for ``benchmarks/soak.py``: one replica of the paid gateway, configured by the environment.

* ``SOAK_UPSTREAM``: the emulator's URL; ``SOAK_RPC_URL``, ``SOAK_NETWORK``, ``SOAK_PAY_TO``: the dev chain;
* ``SOAK_KEY``: this replica's own facilitator gas key (replicas never share one);
* ``SOAK_REDIS_URL`` / ``SOAK_REDIS_PREFIX``: the shared payment store; ``SOAK_JOURNAL``: the shared
  settlement journal (a SQLite file both replicas open, or a ``postgresql://`` URL).
"""

from __future__ import annotations

import os
from typing import Any


def create() -> Any:
    from examples.gateway.catalog import load_catalog
    from examples.gateway.config import GatewayConfig, emulator_pools
    from examples.gateway.paid import create_paid_app
    from x402_middleware.facilitator import OnChainFacilitator
    from x402_middleware.journal import open_journal
    from x402_middleware.stores.redis import RedisStore

    catalog = load_catalog()
    network = os.environ["SOAK_NETWORK"]
    return create_paid_app(
        GatewayConfig(catalog=catalog, pools=emulator_pools(os.environ["SOAK_UPSTREAM"], catalog)),
        pay_to=os.environ["SOAK_PAY_TO"],
        network=network,
        facilitator=OnChainFacilitator(os.environ["SOAK_RPC_URL"], [os.environ["SOAK_KEY"]], network=network),
        store=RedisStore.from_url(os.environ["SOAK_REDIS_URL"], prefix=os.environ["SOAK_REDIS_PREFIX"]),
        journal=open_journal(os.environ["SOAK_JOURNAL"]),
    )
