"""One facilitator over several: each payment goes to the one that settles its network.

For an app that takes more than one chain with self-hosted settlement, e.g. Base and Solana::

    facilitator = MultiFacilitator(
        OnChainFacilitator(base_rpc, [evm_key], network="eip155:8453"),
        SolanaFacilitator(solana_rpc, [fee_payer_secret], network="solana"),
    )

``/supported`` is the union of theirs (kinds in order, signers merged per family).
"""

from __future__ import annotations

from typing import Any

from .._exceptions import ConfigurationError
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from ._protocol import Facilitator

__all__ = ["MultiFacilitator"]


class MultiFacilitator:
    """Routes ``verify``/``settle`` by ``requirements.network`` to the facilitator whose ``network`` it is.

    Each facilitator given must have a ``network`` attribute (a :class:`~x402_middleware.networks.Network`), as
    :class:`OnChainFacilitator` and :class:`SolanaFacilitator` do; a payment on any other network is refused
    with ``network_mismatch``.
    """

    def __init__(self, *facilitators: Facilitator) -> None:
        self._by_network: dict[str, Facilitator] = {}
        for facilitator in facilitators:
            network = getattr(facilitator, "network", None)
            caip2 = getattr(network, "caip2", None)
            if not isinstance(caip2, str):
                raise ConfigurationError(f"{facilitator!r} has no network attribute to route payments by")
            if caip2 in self._by_network:
                raise ConfigurationError(f"two facilitators settle {caip2}; give one per network")
            self._by_network[caip2] = facilitator
        if not self._by_network:
            raise ConfigurationError("MultiFacilitator needs at least one facilitator")

    @property
    def facilitators(self) -> list[Facilitator]:
        return list(self._by_network.values())

    def _for(self, requirements: PaymentRequirements) -> Facilitator | None:
        return self._by_network.get(requirements.network.caip2)

    def _refusal(self, requirements: PaymentRequirements) -> str:
        return f"no facilitator here settles {requirements.network.caip2} (only {', '.join(self._by_network)})"

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        facilitator = self._for(requirements)
        if facilitator is None:
            return VerifyResult(False, "network_mismatch", self._refusal(requirements), payload.payer)
        return await facilitator.verify(payload, requirements)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        facilitator = self._for(requirements)
        if facilitator is None:
            caip2 = requirements.network.caip2
            return SettleResult(False, caip2, "", payload.payer, "network_mismatch", self._refusal(requirements))
        return await facilitator.settle(payload, requirements)

    async def supported(self) -> dict[str, Any]:
        kinds: list[Any] = []
        extensions: list[Any] = []
        signers: dict[str, list[str]] = {}
        for facilitator in self._by_network.values():
            doc = await facilitator.supported()
            kinds.extend(doc.get("kinds") or ())
            extensions.extend(e for e in doc.get("extensions") or () if e not in extensions)
            for family, addresses in (doc.get("signers") or {}).items():
                known = signers.setdefault(family, [])
                known.extend(a for a in addresses if a not in known)
        return {"kinds": kinds, "extensions": extensions, "signers": signers}

    async def aclose(self) -> None:
        for facilitator in self._by_network.values():
            close = getattr(facilitator, "aclose", None)
            if close is not None:
                await close()
