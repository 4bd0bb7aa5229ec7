"""Usage billing: a chat call pays what it really used, at most its quote (x402 ``upto``).

In ``usage`` mode (the deployment's ``billing``, or a model's ``settle`` in the catalog) the 402 offers two ways to
pay the quote: ``exact`` (EIP-3009, the quote itself; first, for BlockRun's clients, which take ``accepts[0]``) and
``upto`` (Permit2, the quote as a **maximum**). A caller that signs ``upto`` is charged, once the response is
complete, from the usage the upstream reported::

    charge = ceil((input_tokens x in_rate + output_tokens x out_rate) / 1M, floor $0.001) + fee   # atomic USDC

(:func:`~.quote.usage_price`; the long-context rates above the model's threshold), capped at the maximum it
signed. The handler already records the upstream's usage in ``scope["gateway.trace"]["usage"]`` (non-stream: the
response's ``usage``; streams: the final usage chunk, which the gateway always asks an OpenAI upstream for with
``stream_options.include_usage``, Anthropic's ``message_delta`` usage, Gemini's ``usageMetadata``), so
:func:`usage_charge` reads it from there when the payment layer settles. No usage reported: the maximum, logged.
A stream whose upstream failed midway is not charged (0: no transaction); a failed call (an error status) is
never settled at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from x402_middleware import PaymentOption, Served, TokenAmount
from x402_middleware.networks import get_network

from .catalog import ModelInfo
from .prepare import PREPARED
from .quote import usage_price
from .service import Prepared

logger = logging.getLogger("examples.gateway")

EXACT, USAGE = "exact", "usage"
#: ``extra`` key of an ``upto`` requirement naming the facilitator that may settle it (its ``/supported`` says).
FACILITATOR_ADDRESS = "facilitatorAddress"


@dataclass(frozen=True, slots=True)
class UsageBilling:
    """Which models are billed by usage, and the ``upto`` offer made for them.

    ``default`` is the deployment's mode (a model's catalog ``settle`` overrides it); ``facilitator_address`` is
    the facilitator's settling address, published in every ``upto`` requirement (clients refuse one without it).
    """

    default: str
    networks: Sequence[str]
    facilitator_address: str | None

    def __post_init__(self) -> None:
        if self.default not in (EXACT, USAGE):
            raise ValueError(f"billing must be {EXACT!r} or {USAGE!r}, got {self.default!r}")

    def mode(self, model: ModelInfo) -> str:
        """``exact`` or ``usage`` for ``model``."""
        return model.settle or self.default

    def price(self, model: ModelInfo, amount: int) -> Any:
        """The price of a call quoted ``amount``: the amount itself (``exact``), or exact then ``upto`` options."""
        evm = [n for n in self.networks if get_network(n).namespace == "eip155"]  # upto is Permit2: EVM only
        if self.mode(model) != USAGE or not evm:
            return TokenAmount(amount)
        if self.facilitator_address is None:
            raise ValueError(
                "usage billing needs the facilitator's address for upto requirements (facilitator_address=)"
            )
        extra = {FACILITATOR_ADDRESS: self.facilitator_address}
        exact = [PaymentOption(n, TokenAmount(amount)) for n in self.networks]
        return exact + [PaymentOption(n, TokenAmount(amount), scheme="upto", extra=extra) for n in evm]


def usage_charge(served: Served) -> int | None:
    """The payment layer's ``charge=`` for chat routes: the actual cost of an ``upto``-paid call.

    Reads the call (``scope[PREPARED]``) and the upstream's usage (``scope["gateway.trace"]``); records
    ``billing``, ``usage_charge`` and, when it applies, ``usage_capped`` in the trace (the log line). ``None`` when
    the upstream reported no usage: the payment layer then settles the maximum.
    """
    scope: Mapping[str, Any] = served.request
    trace: dict[str, Any] = scope.get("gateway.trace", {})
    prepared = scope.get(PREPARED)
    trace["billing"] = USAGE
    if not isinstance(prepared, Prepared):  # pragma: no cover - chat routes always run behind PrepareOnce
        return None
    model = prepared.call.model
    if trace.get("stream_error"):  # the upstream failed midway: a failed call is not charged
        logger.warning("usage billing: the %s stream failed upstream; charged 0", model.id)
        trace["usage_charge"] = 0
        return 0
    usage = trace.get("usage")
    tokens = _tokens(usage)
    if tokens is None:
        logger.warning(
            "usage billing: the upstream reported no usage for a %s call; settling its maximum %s",
            model.id,
            served.payment.amount,
        )
        trace["usage_charge"] = served.payment.amount
        return None
    amount = usage_price(model, *tokens)
    if amount is None:  # pragma: no cover - free models are never paid for
        return 0
    if amount > served.payment.amount:  # more output than the quote's share of max_tokens: the quote caps it
        trace["usage_capped"] = amount
        amount = served.payment.amount
    trace["usage_charge"] = amount
    return amount


def _tokens(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:
        return None
    return prompt, completion
