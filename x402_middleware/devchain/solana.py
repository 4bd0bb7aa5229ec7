"""The dev chain's Solana side: LiteSVM (the real Solana runtime and SPL Token program, in process) behind JSON-RPC.

A USDC look-alike mint (6 decimals) sits at the emulated cluster's canonical USDC address, so unmodified
x402 clients sign for it; payers hold USDC in their associated token accounts and no SOL (the facilitator's
fee payers pay the fees and hold SOL); ``pay_to`` has a token account ready to receive. The JSON-RPC server
(:mod:`._svm_rpc`, which lists the methods served) listens on 127.0.0.1. It starts in a few tens of
milliseconds and needs only the ``svm`` extra (``solders``)::

    with SolanaDevChain(payers=2) as chain:
        print(chain.rpc_url, chain.mint, chain.network)          # http://127.0.0.1:PORT EPjF… solana:5eyk…
        assert chain.token_balance(chain.payer_addresses[0]) == 1_000_000_000
"""

from __future__ import annotations

import hashlib
import threading
import time
from types import TracebackType
from typing import Any, Self

from solders.account import Account
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.token.state import Mint, TokenAccount, TokenAccountState

from ..networks import SOLANA_DEVNET, SOLANA_MAINNET, get_network
from ..svm import TOKEN_PROGRAM, associated_token_address
from ._svm_rpc import SvmRPCServer

__all__ = ["SOLANA_TARGETS", "SolanaDevChain", "solana_keypair"]

SOLANA_TARGETS = {"solana": SOLANA_MAINNET, "solana-devnet": SOLANA_DEVNET}
_MINT_SIZE, _ACCOUNT_SIZE = 82, 165
LAMPORTS_PER_SOL = 1_000_000_000


def solana_keypair(label: str) -> Keypair:
    """A deterministic, publicly known keypair for dev-chain wallets (never hold real funds with it)."""
    return Keypair.from_seed(hashlib.sha256(f"x402_middleware devchain solana {label}".encode()).digest())


class SolanaDevChain:
    """LiteSVM with a USDC-like mint at the cluster's canonical address, funded wallets and a JSON-RPC server.

    ``network`` is ``"solana"`` (mainnet, mint ``EPjF…Dt1v``) or ``"solana-devnet"`` (``4zMM…ncDU``), by v1
    name or CAIP-2 id. Payers get ``payer_balance`` atomic USDC each (default 1,000 USDC), fee payers
    ``fee_payer_sol`` SOL each.
    """

    def __init__(
        self,
        network: str = "solana",
        *,
        payers: int = 3,
        fee_payers: int = 1,
        payer_balance: int = 1_000 * 10**6,
        fee_payer_sol: int = 10,
    ) -> None:
        net = get_network(SOLANA_TARGETS.get(network, network))
        if net.caip2 not in SOLANA_TARGETS.values() or net.asset is None:
            raise ValueError(f"the Solana dev chain emulates {' or '.join(SOLANA_TARGETS)}, not {network!r}")
        if payers < 0 or fee_payers < 1 or payer_balance < 0:
            raise ValueError("payers >= 0, fee_payers >= 1 and payer_balance >= 0, please")
        self.network = net.caip2
        self.mint = net.asset.address
        self.decimals = net.asset.decimals
        self.payers = [solana_keypair(f"payer {i}") for i in range(payers)]
        self.fee_payers = [solana_keypair(f"fee payer {i}") for i in range(fee_payers)]
        self.pay_to_keypair = solana_keypair("pay_to")
        self.mint_authority = solana_keypair("mint authority")
        self.payer_balance = payer_balance
        self.fee_payer_sol = fee_payer_sol
        self.lock = threading.RLock()
        self.svm: LiteSVM | None = None
        self._server: SvmRPCServer | None = None
        self.timings: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Self:
        started = time.perf_counter()
        svm = LiteSVM()
        self.svm = svm
        mint = Mint(self.mint_authority.pubkey(), 0, self.decimals, True, None)
        self._set(Pubkey.from_string(self.mint), bytes(mint), TOKEN_PROGRAM)
        for keypair in self.fee_payers:
            svm.airdrop(keypair.pubkey(), self.fee_payer_sol * LAMPORTS_PER_SOL)
        for keypair in self.payers:
            self.mint_to(str(keypair.pubkey()), self.payer_balance)
        self.create_token_account(self.pay_to)
        self._server = SvmRPCServer(svm, network=self.network, lock=self.lock).start()
        self.timings["ready_ms"] = (time.perf_counter() - started) * 1000
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------------------------------
    @property
    def rpc_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Solana dev chain is not started")
        return self._server.url

    @property
    def rpc(self) -> SvmRPCServer:
        """The JSON-RPC server (its ``calls`` count the methods clients used)."""
        if self._server is None:
            raise RuntimeError("the Solana dev chain is not started")
        return self._server

    @property
    def pay_to(self) -> str:
        return str(self.pay_to_keypair.pubkey())

    @property
    def payer_addresses(self) -> list[str]:
        return [str(k.pubkey()) for k in self.payers]

    @property
    def payer_secret_keys(self) -> list[str]:
        """Base58 64-byte secret keys (the Solana CLI / wallet export form)."""
        return [str(k) for k in self.payers]

    @property
    def fee_payer_secret_keys(self) -> list[str]:
        return [str(k) for k in self.fee_payers]

    @property
    def fee_payer_addresses(self) -> list[str]:
        return [str(k.pubkey()) for k in self.fee_payers]

    def token_balance(self, owner: str) -> int:
        """``owner``'s USDC in its associated token account (0 when it has none)."""
        account = self._svm().get_account(associated_token_address(owner, self.mint))
        return TokenAccount.from_bytes(bytes(account.data)).amount if account is not None else 0

    def lamports(self, address: str) -> int:
        return self._svm().get_balance(Pubkey.from_string(address)) or 0

    def info(self) -> dict[str, Any]:
        """What a client needs, JSON-ready (the dev chain's JSON line)."""
        return {
            "solana_rpc_url": self.rpc_url,
            "solana_network": self.network,
            "mint": self.mint,
            "decimals": self.decimals,
            "solana_payer_secret_keys": self.payer_secret_keys,
            "solana_payer_addresses": self.payer_addresses,
            "solana_fee_payer_secret_keys": self.fee_payer_secret_keys,
            "solana_fee_payers": self.fee_payer_addresses,
            "solana_pay_to": self.pay_to,
        }

    # -- edits (dev and tests only: the runtime's accounts written directly, as a genesis would) ------------
    def create_token_account(self, owner: str, amount: int = 0) -> str:
        """Give ``owner`` an associated token account for the mint holding ``amount`` (replacing any); its address."""
        ata = associated_token_address(owner, self.mint)
        token = TokenAccount(
            Pubkey.from_string(self.mint),
            Pubkey.from_string(owner),
            amount,
            None,
            TokenAccountState.Initialized,
            None,
            0,
        )
        self._set(ata, bytes(token), TOKEN_PROGRAM)
        return str(ata)

    def mint_to(self, owner: str, amount: int) -> None:
        """Add ``amount`` to ``owner``'s token account (creating it) and to the mint's supply."""
        with self.lock:
            svm = self._svm()
            mint_key = Pubkey.from_string(self.mint)
            mint = Mint.from_bytes(bytes(svm.get_account(mint_key).data))  # type: ignore[union-attr]
            new_mint = Mint(mint.mint_authority, mint.supply + amount, mint.decimals, True, None)
            self._set(mint_key, bytes(new_mint), TOKEN_PROGRAM)
            self.create_token_account(owner, self.token_balance(owner) + amount)

    def airdrop(self, address: str, lamports: int) -> None:
        with self.lock:
            self._svm().airdrop(Pubkey.from_string(address), lamports)

    def _set(self, address: Pubkey, data: bytes, owner: Pubkey) -> None:
        svm = self._svm()
        with self.lock:
            rent = svm.minimum_balance_for_rent_exemption(len(data))
            svm.set_account(address, Account(rent, data, owner, False))

    def _svm(self) -> LiteSVM:
        if self.svm is None:
            raise RuntimeError("the Solana dev chain is not started")
        return self.svm
