"""Networks and their default USDC-like assets.

Each network has a CAIP-2 id (x402 v2, e.g. ``eip155:8453``), an optional v1
name (``base``), for EVM networks a chain id, and a default asset; an EVM asset's EIP-712 ``name``/``version``
must equal the token's own ``name()``/``version()`` or every signature fails
(x402 ``mechanisms/evm/default_assets.py``, 2.25.0). Register your own network
or asset (a local chain, another token) with :func:`register_network`::

    register_network(Network("eip155:31337", 31337, asset=Asset("0x5FbD...0aa3", "USD Coin", "2")))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class Asset:
    """A token: its address on its chain, ``name``/``version`` (for EVM tokens, their EIP-712 domain) and decimals.

    A ``0x`` address must be 20 bytes of hex; other chains' addresses (a Solana mint) are taken as given.
    """

    address: str
    name: str
    version: str
    decimals: int = 6
    symbol: str = "USDC"

    def __post_init__(self) -> None:
        check_address(self.address, "asset address")
        if not 0 <= self.decimals <= 36:
            raise ConfigurationError(f"asset decimals must be between 0 and 36, got {self.decimals}")


@dataclass(frozen=True, slots=True)
class Network:
    """A network x402 can pay on, named by its CAIP-2 id ``namespace:reference``.

    ``chain_id`` is the EVM chain id of an ``eip155`` network (``eip155:<chain_id>``) and ``None`` for
    other namespaces (``solana:<genesis hash>``), which schemes register networks for too.
    """

    caip2: str
    chain_id: int | None = None
    asset: Asset | None = None
    v1_name: str | None = None
    testnet: bool = False

    def __post_init__(self) -> None:
        if not _CAIP2.match(self.caip2):
            raise ConfigurationError(f"network id {self.caip2!r} is not a CAIP-2 id such as 'eip155:8453'")
        if self.namespace == "eip155":
            if self.caip2 != f"eip155:{self.chain_id}":
                raise ConfigurationError(
                    f"network id {self.caip2!r} must be 'eip155:{self.chain_id}' for chain id {self.chain_id}"
                )
            if self.asset is not None and not is_hex_address(self.asset.address):
                raise ConfigurationError(f"an eip155 asset needs a 0x address, got {self.asset.address!r}")
        elif self.chain_id is not None:
            raise ConfigurationError(f"chain_id is for eip155 networks only, not {self.caip2!r}")

    @property
    def namespace(self) -> str:
        """The CAIP-2 namespace: ``eip155``, ``solana``, ..."""
        return self.caip2.partition(":")[0]

    @property
    def wire_v1(self) -> str:
        """The network name to put in v1 messages (the legacy name when there is one)."""
        return self.v1_name or self.caip2


# CAIP-2: namespace [-a-z0-9]{3,8}, reference [-_a-zA-Z0-9]{1,32}
_CAIP2 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}\Z")
_HEX_ADDRESS = re.compile(r"^0[xX][0-9a-fA-F]{40}\Z")


def check_address(value: object, what: str) -> str:
    """An address given in configuration: a non-empty string without spaces, and 20 bytes of hex if it is a ``0x``
    address (other chains' addresses are checked by their scheme). Raises :class:`ConfigurationError`."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ConfigurationError(f"{what} must be an address (a non-empty string without spaces), got {value!r}")
    if value[:2] in ("0x", "0X") and not is_hex_address(value):
        raise ConfigurationError(f"{what} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    return value


def is_hex_address(value: str) -> bool:
    # A regex, not int(value, 16): int() also takes a sign, underscores and surrounding spaces.
    return isinstance(value, str) and _HEX_ADDRESS.match(value) is not None


def _n(
    chain_id: int,
    address: str,
    name: str,
    version: str,
    v1: str | None = None,
    *,
    testnet: bool = False,
    decimals: int = 6,
    symbol: str = "USDC",
) -> Network:
    return Network(f"eip155:{chain_id}", chain_id, Asset(address, name, version, decimals, symbol), v1, testnet)


# The EVM rows of the x402 2.25.0 default-asset table (../shared/docs/x402-protocol.md §4)
# that EVM `exact` pays by signed authorization (FiatTokenV2 style); Permit2-only tokens are left out.
_BUILTIN: tuple[Network, ...] = (
    _n(8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2", "base"),
    _n(84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2", "base-sepolia", testnet=True),
    _n(1, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USD Coin", "2", "ethereum"),
    _n(43114, "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", "USD Coin", "2", "avalanche"),
    _n(43113, "0x5425890298aed601595a70AB815c96711a31Bc65", "USD Coin", "2", "avalanche-fuji", testnet=True),
    _n(137, "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "USD Coin", "2", "polygon"),
    _n(80002, "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", "USDC", "2", "polygon-amoy", testnet=True),
    _n(42161, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", "2"),
    _n(421614, "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", "USD Coin", "2", testnet=True),
    _n(143, "0x754704Bc059F8C67012fEd69BC8A327a5aafb603", "USDC", "2", "monad"),
    _n(10143, "0x534b2f3A21130d7a60830c2Df862319e593943A3", "USDC", "2", testnet=True),
    _n(1329, "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392", "USDC", "2", "sei"),
    _n(1328, "0x4fCF1784B31630811181f670Aea7A7bEF803eaED", "USDC", "2", "sei-testnet", testnet=True),
    _n(42220, "0xcebA9300f2b948710d2653dD7B07f33A8B32118C", "USDC", "2"),
    _n(11142220, "0x01C5C0122039549AD1493B8220cABEdD739BC44E", "USDC", "2", testnet=True),
    _n(988, "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", "USDT0", "1", symbol="USDT0"),
    _n(2201, "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9", "USDT0", "1", testnet=True, symbol="USDT0"),
    _n(14, "0xe7cd86e13AC4309349F30B3435a9d337750fC82D", "USD\u20ae0", "1", symbol="USDT0"),
    _n(50, "0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1", "USDC", "2"),
    _n(51, "0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4", "USDC", "2", testnet=True),
    _n(5042, "0x3600000000000000000000000000000000000000", "USDC", "2"),
    _n(5042002, "0x3600000000000000000000000000000000000000", "USDC", "2", testnet=True),
    _n(36900, "0x9cb8142aEBBcdc60AF7c97Af897A67A8f3CA71C2", "USDC.e", "2", symbol="USDC.e"),
    _n(190415, "0x401eCb1D350407f13ba348573E5630B83638E30D", "Bridged USDC", "2", symbol="USDC.e"),
    _n(181228, "0x401eCb1D350407f13ba348573E5630B83638E30D", "Bridged USDC", "2", testnet=True, symbol="USDC.e"),
)

# Solana: CAIP-2 ``solana:<genesis hash prefix>``, the only three ids the official clients accept, with each
# cluster's USDC mint (x402 2.25.0 ``mechanisms/svm/constants.py``; ../shared/docs/x402-protocol.md §4, §7.1).
# ``name``/``version`` mean nothing to an SPL token (no EIP-712 domain); decimals do (TransferChecked).
SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOLANA_DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
SOLANA_TESTNET = "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z"
_SOLANA: tuple[Network, ...] = (
    Network(SOLANA_MAINNET, asset=Asset("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "USDC", ""), v1_name="solana"),
    Network(
        SOLANA_DEVNET,
        asset=Asset("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", "USDC", ""),
        v1_name="solana-devnet",
        testnet=True,
    ),
    Network(
        SOLANA_TESTNET,
        asset=Asset("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", "USDC", ""),
        v1_name="solana-testnet",
        testnet=True,
    ),
)

# Legacy v1 names known to clients but without a default asset here ([py] V1_NETWORK_CHAIN_IDS).
_V1_EXTRA = {
    "abstract": 2741,
    "abstract-testnet": 11124,
    "iotex": 4689,
    "peaq": 3338,
    "story": 1513,
    "educhain": 656476,
    "skale-base-sepolia": 1444673419,
}

_by_id: dict[str, Network] = {}
_by_v1: dict[str, Network] = {}


def register_network(network: Network, *, replace: bool = True) -> Network:
    """Add (or replace) a network so routes and payments can name it.

    Use it for a local chain or a token that is not built in::

        register_network(Network("eip155:31337", 31337,
                                 asset=Asset("0x5FbDB2315678afecb367f032d93F642f64180aa3", "USD Coin", "2")))
    """
    if not replace and network.caip2 in _by_id:
        raise ConfigurationError(f"network {network.caip2} is already registered")
    _by_id[network.caip2] = network
    if network.v1_name:
        _by_v1[network.v1_name] = network
    return network


def get_network(name: str) -> Network:
    """Look a network up by CAIP-2 id (``eip155:8453``) or v1 name (``base``)."""
    net = _by_id.get(name) or _by_v1.get(name)
    if net is None:
        chain = _V1_EXTRA.get(name)
        if chain is not None:
            net = _by_id.get(f"eip155:{chain}")
    if net is None:
        known = ", ".join(sorted(_by_id))
        raise ConfigurationError(
            f"unknown network {name!r}; use a CAIP-2 id such as 'eip155:8453' ({known}) "
            "or add yours with x402_middleware.register_network(Network(...))"
        )
    return net


def find_network(name: str) -> Network | None:
    """Like :func:`get_network` but returns ``None`` for an unknown name (for parsing client input)."""
    try:
        return get_network(name)
    except ConfigurationError:
        return None


def networks() -> list[Network]:
    """Every registered network."""
    return list(_by_id.values())


for _net in _BUILTIN + _SOLANA:
    register_network(_net)
