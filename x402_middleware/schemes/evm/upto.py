"""The EVM ``upto`` scheme: the payer signs a maximum, the server settles the actual amount (§3.4).

Always Permit2 (:mod:`.permit2`), through the ``x402UptoPermit2Proxy`` with the witness
``Witness(address to,address facilitator,uint256 validAfter)``: only the named facilitator may submit the
transfer and choose its amount, at most the signed ``permitted.amount``. A requirement's ``extra`` carries
the token's EIP-712 ``name``/``version`` and the ``facilitatorAddress`` the facilitator publishes in
``/supported`` (``kinds[].extra``). At verification the requirement's ``amount`` is the maximum; at
settlement the same payload is settled with ``amount`` = the actual charge (0: nothing is transferred)::

    scheme = find_scheme("upto", "eip155")
    payload = scheme.sign(requirement, key, now=int(time.time()))     # signs requirement.amount as the maximum
    facilitator.settle(payment, dataclasses.replace(requirement, amount=actual))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._exceptions import MalformedPaymentError
from ...models import PaymentPayload, PaymentRequirements, VerifyResult
from ...networks import Asset, Network
from .. import PaymentId, register_scheme
from .exact import ExactEvmScheme, parse_evm_requirement
from .permit2 import (
    INVALID_NONCE,
    UPTO_PERMIT2_PROXY,
    Permit2Payload,
    parse_permit2_payload,
    permit2_payment_id,
    sign_permit2,
    verify_permit2,
)

__all__ = ["FACILITATOR_ADDRESS", "UptoEvmScheme"]

#: The ``extra`` key naming the facilitator allowed to settle (the official SDKs' name).
FACILITATOR_ADDRESS = "facilitatorAddress"


class UptoEvmScheme:
    """``upto`` on ``eip155`` networks: a Permit2 signature for a maximum, settled for the actual amount."""

    scheme = "upto"
    namespace = "eip155"
    address_format = ExactEvmScheme.address_format
    replay_reason = INVALID_NONCE

    def valid_address(self, value: str) -> bool:
        return ExactEvmScheme().valid_address(value)

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        # The token's EIP-712 domain, for the EIP-2612 gas-sponsoring permit; Permit2 signs its own domain.
        return ExactEvmScheme().requirement_extra(requirement)

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        facilitator = extra.get(FACILITATOR_ADDRESS)
        if not isinstance(facilitator, str) or not self.valid_address(facilitator):
            raise MalformedPaymentError(
                "an 'upto' requirement needs extra.facilitatorAddress, the address of the facilitator that settles "
                "it (its /supported lists it under kinds[].extra)"
            )
        return parse_evm_requirement(network, asset, pay_to, extra, domain_required=False)

    def parse_payload(self, payload: Mapping[str, Any]) -> Permit2Payload:
        return parse_permit2_payload(payload, upto=True)

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult | None:
        # Locally the facilitator is the one the requirement names; a facilitator checks its own addresses.
        named = requirement.extra.get(FACILITATOR_ADDRESS)
        return verify_permit2(
            payment, requirement, now, upto=True, facilitators=[named] if isinstance(named, str) else None
        )

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        return permit2_payment_id(payment, requirement.network)

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        facilitator = requirement.extra.get(FACILITATOR_ADDRESS)
        if not isinstance(facilitator, str) or not self.valid_address(facilitator):
            raise MalformedPaymentError("an 'upto' requirement needs extra.facilitatorAddress to be signed")
        return sign_permit2(requirement, key, now, spender=UPTO_PERMIT2_PROXY, facilitator=facilitator)


register_scheme(UptoEvmScheme())
