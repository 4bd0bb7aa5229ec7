"""The dev chain: anvil + TestUSDC at the address real clients expect + Multicall3Lite + funded wallets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ..evm.abi import decode_output, encode_call
from . import _abi
from ._anvil import AnvilProcess
from ._rpc import SyncRPC

BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
BASE_SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
# Uniswap's Permit2 and the x402 Foundation's Permit2 proxies: the same address on every chain (CREATE2).
PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PERMIT2_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PERMIT2_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
MAX_UINT256 = 2**256 - 1
# anvil's dev account #0 (mnemonic "test test ... junk"), 10,000 ETH at genesis. Public; dev chains only.
ANVIL_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
TOKEN_VERSION = "2"
#: The block time of the long-running dev tools' chains (seconds; Base's): see DevChain's ``block_time``.
DEV_BLOCK_TIME = 2


@dataclass(frozen=True, slots=True)
class ChainTarget:
    """A network the dev chain emulates: its chain id, the token's EIP-712 name and where the token sits.

    ``canonical_asset`` is the real USDC address of that network (the token's runtime code is copied
    there so unmodified clients sign for it); None keeps the token at its deployed address.
    """

    key: str
    chain_id: int
    token_name: str
    canonical_asset: str | None

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"


TARGETS: dict[str, ChainTarget] = {
    "base": ChainTarget("base", 8453, "USD Coin", BASE_USDC),
    "base-sepolia": ChainTarget("base-sepolia", 84532, "USDC", BASE_SEPOLIA_USDC),
    "local": ChainTarget("local", 31337, "USD Coin", None),
}


def derived_key(label: str) -> str:
    """A deterministic, publicly known private key for dev-chain wallets (never use it on a real chain)."""
    return "0x" + keccak(text=f"x402_middleware devchain {label}").hex()


def _address(private_key: str) -> str:
    return str(Account.from_key(private_key).address)


class DevChain:
    """A started anvil with a test USDC, Multicall3Lite, Permit2 and the x402 Permit2 proxies (at their
    canonical addresses), USDC-funded payers and ETH-funded facilitators.

    ``network`` is ``"local"`` (chain 31337, token at its deployed address, name "USD Coin"),
    ``"base"`` (8453, token at Base's USDC address, "USD Coin") or ``"base-sepolia"`` (84532, token at
    Base Sepolia's USDC address, "USDC"). Payers hold USDC and no ETH; facilitator keys hold ETH. With
    ``permit2_allowance`` (the default) every payer has approved Permit2 for the maximum, so Permit2 payments
    (``exact`` with ``assetTransferMethod: "permit2"``, ``upto``) work at once; :meth:`approve_permit2` changes it.

    Example::

        with DevChain("base-sepolia", payers=2) as chain:
            print(chain.rpc_url, chain.asset, chain.network)       # http://127.0.0.1:PORT 0x036C… eip155:84532
            assert chain.balance_of(chain.payer_addresses[0]) == 1_000_000_000
            snap = chain.snapshot()
            chain.mint(chain.pay_to, 5)
            chain.revert(snap)
    """

    def __init__(
        self,
        network: str = "local",
        *,
        payers: int = 3,
        facilitators: int = 1,
        payer_balance: int = 1_000 * 10**6,
        facilitator_eth: int = 10_000 * 10**18,
        anvil: str | None = None,
        permit2_allowance: bool = True,
        block_time: int | None = None,
    ) -> None:
        if network not in TARGETS:
            raise ValueError(f"unknown dev-chain network {network!r}; choose one of {', '.join(TARGETS)}")
        if payers < 0 or facilitators < 0 or payer_balance < 0 or facilitator_eth < 0:
            raise ValueError("payers, facilitators and balances must be >= 0")
        self.target = TARGETS[network]
        self.chain_id = self.target.chain_id
        self.network = self.target.network
        self.token_name = self.target.token_name
        self.token_version = TOKEN_VERSION
        self.deployer_key = ANVIL_DEPLOYER_KEY
        self.payer_keys = [derived_key(f"payer {i}") for i in range(payers)]
        self.facilitator_keys = [derived_key(f"facilitator {i}") for i in range(facilitators)]
        self.deployer = _address(self.deployer_key)
        self.payer_addresses = [_address(k) for k in self.payer_keys]
        self.facilitator_addresses = [_address(k) for k in self.facilitator_keys]
        self.pay_to_key = derived_key("pay-to")
        self.pay_to = _address(self.pay_to_key)
        self.payer_balance = payer_balance
        self.facilitator_eth = facilitator_eth
        self.permit2_allowance = permit2_allowance
        self.block_time = block_time
        self.asset = ""  # known once started
        self.timings: dict[str, float] = {}
        self._anvil_path = anvil
        self._anvil: AnvilProcess | None = None
        self._rpc: SyncRPC | None = None

    # ---- lifecycle ----

    def start(self) -> Self:
        """Start anvil and set everything up; returns ``self``. Stops anvil again if setup fails."""
        if self._anvil is not None:
            raise RuntimeError("DevChain already started")
        t0 = time.perf_counter()
        self._anvil = AnvilProcess(self.chain_id, executable=self._anvil_path, block_time=self.block_time)
        try:
            self._rpc = SyncRPC(self._anvil.url)
            self._rpc("eth_chainId")
            self.timings["anvil_ready_ms"] = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            self._setup()
            self.timings["setup_ms"] = (time.perf_counter() - t1) * 1000
        except BaseException:
            self.stop()
            raise
        return self

    def _setup(self) -> None:
        token = _abi.contract("TestUSDC")
        initcode = bytes.fromhex(token["bytecode"][2:]) + abi_encode(["string"], [self.token_name])
        receipt = self.send(self.deployer_key, None, initcode)
        self.timings["deploy_gas"] = int(receipt["gasUsed"], 16)
        deployed = to_checksum_address(receipt["contractAddress"])
        if self.target.canonical_asset is None:
            self.asset = deployed
        else:
            # Copy the runtime code (immutables included: name, owner). The token keeps no
            # constructor-written storage, so the copy is fully functional. See local-chain.md §6.
            self.asset = self.target.canonical_asset
            self.rpc("anvil_setCode", self.asset, self.rpc("eth_getCode", deployed, "latest"))
        self.rpc("anvil_setCode", MULTICALL3_ADDRESS, _abi.contract("Multicall3Lite")["deployedBytecode"])
        self._place("Permit2", PERMIT2_ADDRESS, b"")
        for name, address in (
            ("x402ExactPermit2Proxy", EXACT_PERMIT2_PROXY),
            ("x402UptoPermit2Proxy", UPTO_PERMIT2_PROXY),
        ):
            self._place(name, address, abi_encode(["address"], [PERMIT2_ADDRESS]))
        for address in self.facilitator_addresses:
            self.rpc("anvil_setBalance", address, hex(self.facilitator_eth))
        if self.payer_balance:
            for address in self.payer_addresses:
                self.mint(address, self.payer_balance)
        if self.permit2_allowance:
            for address in self.payer_addresses:
                self.approve_permit2(address, MAX_UINT256)

    def _place(self, name: str, address: str, constructor_args: bytes) -> None:
        """Deploy ``name`` and copy its runtime code (immutables included) to ``address``."""
        initcode = bytes.fromhex(_abi.contract(name)["bytecode"][2:]) + constructor_args
        deployed = self.send(self.deployer_key, None, initcode)["contractAddress"]
        self.rpc("anvil_setCode", address, self.rpc("eth_getCode", deployed, "latest"))

    def stop(self) -> None:
        """Stop anvil (SIGTERM by PID, then wait). Safe to call twice."""
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None
        if self._anvil is not None:
            self._anvil.stop()
            self._anvil = None

    def __enter__(self) -> Self:
        return self.start() if self._anvil is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- facts ----

    @property
    def rpc_url(self) -> str:
        return self._process().url

    @property
    def pid(self) -> int:
        """anvil's own PID (the ELF, not a wrapper)."""
        return self._process().pid

    @property
    def running(self) -> bool:
        return self._anvil is not None and self._anvil.running

    @property
    def multicall_address(self) -> str:
        return MULTICALL3_ADDRESS

    def eip712_domain(self) -> dict[str, Any]:
        """The token's EIP-712 domain, ready for ``Account.sign_typed_data``."""
        return {
            "name": self.token_name,
            "version": self.token_version,
            "chainId": self.chain_id,
            "verifyingContract": self.asset,
        }

    def info(self) -> dict[str, Any]:
        """What the CLI prints: everything a client, a facilitator or a test needs to use the chain."""
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "network": self.network,
            "asset": self.asset,
            "token_name": self.token_name,
            "token_version": self.token_version,
            "payer_private_keys": list(self.payer_keys),
            "payer_addresses": list(self.payer_addresses),
            "facilitator_private_keys": list(self.facilitator_keys),
            "pay_to": self.pay_to,
            "permit2": PERMIT2_ADDRESS,
            "exact_permit2_proxy": EXACT_PERMIT2_PROXY,
            "upto_permit2_proxy": UPTO_PERMIT2_PROXY,
        }

    # ---- helpers ----

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call, e.g. ``chain.rpc("eth_blockNumber")``; errors raise ``RPCError``."""
        if self._rpc is None:
            raise RuntimeError("DevChain is not started")
        return self._rpc(method, *params)

    def call(self, to: str, data: bytes) -> bytes:
        """``eth_call`` at the latest block; a revert raises ``RPCError`` with ``revert_reason``."""
        return bytes.fromhex(self.rpc("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")[2:])

    def send(
        self,
        private_key: str,
        to: str | None,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """Sign and send an EIP-1559 transaction, wait for and return its receipt.

        Without ``gas`` the node estimates it (a revert raises ``RPCError`` before sending); pass ``gas``
        to mine a failing transaction. ``check`` raises ``TransactionFailed`` on a status-0 receipt.

        Example::

            receipt = chain.send(chain.facilitator_keys[0], chain.asset,
                                 encode_call("transfer(address,uint256)", chain.pay_to, 0))
        """
        if self._rpc is None:
            raise RuntimeError("DevChain is not started")
        return self._rpc.send_transaction(private_key, self.chain_id, to, data, value=value, gas=gas, check=check)

    def balance_of(self, address: str) -> int:
        """The token balance of ``address`` in atomic units (6 decimals)."""
        data = encode_call("balanceOf(address)", address)
        (balance,) = decode_output("(uint256)", self.call(self.asset, data))
        return int(balance)

    def mint(self, address: str, amount: int) -> str:
        """Mint ``amount`` atomic units to ``address`` (sent by the deployer); returns the tx hash."""
        receipt = self.send(self.deployer_key, self.asset, encode_call("mint(address,uint256)", address, amount))
        return str(receipt["transactionHash"])

    def allowance(self, owner: str, spender: str = PERMIT2_ADDRESS) -> int:
        """The token allowance ``owner`` gave ``spender`` (default: Permit2)."""
        data = encode_call("allowance(address,address)", owner, spender)
        (allowance,) = decode_output("(uint256)", self.call(self.asset, data))
        return int(allowance)

    def approve_permit2(self, owner: str, amount: int = MAX_UINT256) -> str:
        """``owner`` approves Permit2 for ``amount`` of the token (0 revokes); returns the tx hash.

        Payers hold no ETH: the chain lends ``owner`` gas for one impersonated ``approve`` and takes the
        rest back, so the payer's ETH balance stays zero and its EIP-2612 nonce is untouched.
        """
        self.rpc("anvil_setBalance", owner, hex(10**18))
        self.rpc("anvil_impersonateAccount", owner)
        try:
            tx = {
                "from": owner,
                "to": self.asset,
                "data": "0x" + encode_call("approve(address,uint256)", PERMIT2_ADDRESS, amount).hex(),
            }
            tx_hash = str(self.rpc("eth_sendTransaction", tx))
            receipt = self._rpc_client().wait_for_receipt(tx_hash, 10.0)
            if int(receipt["status"], 16) != 1:
                raise RuntimeError(f"approve of Permit2 by {owner} failed: {receipt}")
        finally:
            self.rpc("anvil_stopImpersonatingAccount", owner)
            self.rpc("anvil_setBalance", owner, "0x0")
        return tx_hash

    def authorization_state(self, authorizer: str, nonce: bytes | str) -> bool:
        """Whether an EIP-3009 ``nonce`` (32 bytes or 0x-hex) of ``authorizer`` is used or canceled."""
        raw = bytes.fromhex(nonce.removeprefix("0x")) if isinstance(nonce, str) else nonce
        data = encode_call("authorizationState(address,bytes32)", authorizer, raw)
        (used,) = decode_output("(bool)", self.call(self.asset, data))
        return bool(used)

    def snapshot(self) -> str:
        """Snapshot the chain state (``evm_snapshot``); pass the id to :meth:`revert`."""
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        """Return to a snapshot. anvil drops the snapshot on revert: take a new one to revert again."""
        if not self.rpc("evm_revert", snapshot_id):
            raise RuntimeError(f"evm_revert({snapshot_id!r}) failed: unknown or already used snapshot")

    def _rpc_client(self) -> SyncRPC:
        if self._rpc is None:
            raise RuntimeError("DevChain is not started")
        return self._rpc

    def _process(self) -> AnvilProcess:
        if self._anvil is None:
            raise RuntimeError("DevChain is not started")
        return self._anvil
