"""Gas keys shared by several facilitator processes: each key is leased to one process at a time, on Redis.

An :class:`~x402_middleware.facilitator.OnChainFacilitator` tracks each key's transaction nonce in memory;
two processes sending from one key would race for the same nonces (one transaction replaced, or refused).
Give every process a lease on the keys it uses, from one pool::

    leases = RedisSignerLeases.from_url("redis://127.0.0.1:6379/0", chain_id=8453)
    keys = leases.acquire(all_keys, limit=4)          # the keys no other process holds, at most 4
    facilitator = OnChainFacilitator(rpc_url, keys, network="eip155:8453")
    ...
    leases.release()

A lease is ``SET x402:signer:<chain>:<address> <owner> NX PX ttl``, renewed every ``ttl / 3`` by a
background thread with a compare-and-set. A lease that cannot be renewed (Redis unreachable for longer
than ``ttl``, or taken over) calls ``on_lost``: the process must stop settling with that key; the
facilitator server exits so that its supervisor restarts it with fresh leases.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from eth_account import Account

from .._exceptions import ConfigurationError

try:
    import redis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('signer leases need the redis client: pip install "x402_middleware[redis]"') from exc

__all__ = ["RedisSignerLeases"]

logger = logging.getLogger("x402_middleware.facilitator")

# Extend only our own lease; delete only our own lease.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisSignerLeases:
    """Exclusive leases on gas-paying keys for the facilitator processes of one chain (see the module docs)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        chain_id: int,
        ttl: float = 30.0,
        prefix: str = "x402:signer:",
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        if ttl < 3:
            raise ConfigurationError(f"a signer lease must last at least 3 s, got {ttl}")
        self.client, self.chain_id, self.ttl, self.prefix = client, chain_id, ttl, prefix
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_lost = on_lost
        self.held: list[str] = []  # addresses
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_url(cls, url: str, *, chain_id: int, **kwargs: Any) -> RedisSignerLeases:
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
        return cls(client, chain_id=chain_id, **kwargs)

    def _name(self, address: str) -> str:
        return f"{self.prefix}{self.chain_id}:{address.lower()}"

    def acquire(self, keys: Sequence[str], *, limit: int | None = None) -> list[str]:
        """Lease the keys of ``keys`` no other process holds (at most ``limit``), start renewing them, and
        return them. Raises :class:`ConfigurationError` when none is free or Redis is unreachable."""
        ms = int(self.ttl * 1000)
        got: list[str] = []
        try:
            for key in keys:
                if limit is not None and len(got) >= limit:
                    break
                address = Account.from_key(key).address
                if self.client.set(self._name(address), self.owner, nx=True, px=ms):
                    got.append(key)
                    self.held.append(address)
        except RedisError as exc:
            self.release()
            raise ConfigurationError(f"signer leases: Redis is unreachable ({exc}); nothing was leased") from exc
        if not got:
            raise ConfigurationError(
                f"all {len(keys)} signer keys are leased by other facilitator processes on chain {self.chain_id}: "
                "give this process keys of its own (more --key), or stop another process"
            )
        logger.info("x402: leased %d signer key(s) on chain %s: %s", len(got), self.chain_id, ", ".join(self.held))
        self._thread = threading.Thread(target=self._keep, name="x402-signer-leases", daemon=True)
        self._thread.start()
        return got

    def _keep(self) -> None:
        ms = int(self.ttl * 1000)
        renewed = dict.fromkeys(self.held, time.monotonic())
        while not self._stop.wait(self.ttl / 3):
            for address in list(self.held):
                try:
                    kept = bool(self._renew(keys=[self._name(address)], args=[self.owner, ms]))
                except RedisError as exc:
                    # Still ours until the TTL runs out since the last renewal; after that anyone may take it.
                    kept = time.monotonic() - renewed[address] < self.ttl * 0.9
                    logger.warning("x402: could not renew the lease of signer %s: %s", address, exc)
                else:
                    renewed[address] = time.monotonic()
                if not kept:
                    logger.error("x402: the lease of signer %s was lost: this process must stop using it", address)
                    self.held.remove(address)
                    if self.on_lost is not None:
                        self.on_lost(address)

    def release(self) -> None:
        """Stop renewing and give every lease back (at shutdown)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for address in self.held:
            try:
                self._release(keys=[self._name(address)], args=[self.owner])
            except RedisError as exc:
                logger.warning(
                    "x402: could not release the lease of signer %s (it expires by itself): %s", address, exc
                )
        self.held = []
