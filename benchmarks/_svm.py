"""Solana figures for ``verify.py`` and ``settlement.py`` (needs the ``svm`` extra; skipped when solders is missing).

Payments are built with :func:`x402_middleware.schemes.svm.exact.build_transfer`: compute limit, compute price,
``TransferChecked`` to the recipient's associated token account, a random memo, signed by the payer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload
from x402_middleware.networks import SOLANA_MAINNET, get_network

AMOUNT = 1000  # $0.001 of USDC (6 decimals)
# Any valid 32-byte values do for local checks: nothing here touches a chain.
BLOCKHASH = "CmpNeggWJ4JaWJeJ8YKN1Zypmk7uvQq3PECGUCAEMbky"


def available() -> bool:
    try:
        import solders  # noqa: F401
    except ImportError:
        return False
    return True


def requirement(pay_to: str, fee_payer: str, blockhash: str = BLOCKHASH) -> PaymentRequirements:
    net = get_network(SOLANA_MAINNET)
    assert net.asset is not None
    extra = {"feePayer": fee_payer, "recentBlockhash": blockhash}
    return PaymentRequirements(net, net.asset, AMOUNT, pay_to, extra=extra)


def presign(req: PaymentRequirements, keys: Sequence[bytes], count: int) -> list[PaymentPayload]:
    """``count`` distinct payments for ``req``, round-robin over the payer ``keys`` (each a fresh memo)."""
    from x402_middleware.schemes.svm.exact import ExactSvmScheme

    scheme = ExactSvmScheme()
    wire = req.to_v2()
    wire["extra"] = {k: v for k, v in wire["extra"].items() if k == "feePayer"}  # what a server would offer
    return [
        parse_payment_payload({"x402Version": 2, "accepted": wire, "payload": scheme.sign(req, keys[i % len(keys)], 0)})
        for i in range(count)
    ]


def verify_rows(
    count: int,
    passes: int,
    time_passes: Callable[..., tuple[list[float], list[float], list[float]]],
    record: Callable[[str, list[float], list[float], list[float]], float],
) -> float:
    """Time the Solana local checks (``verify_exact_svm``) and the payload decode; returns the checks' rate per CPU-s."""
    from solders.keypair import Keypair

    from x402_middleware.schemes.svm.exact import ExactSvmScheme, verify_exact_svm

    req = requirement(str(Keypair().pubkey()), str(Keypair().pubkey()))
    payloads = presign(req, [bytes(Keypair()) for _ in range(count)], count)  # distinct payers
    assert verify_exact_svm(payloads[0], req).is_valid

    def check(p: PaymentPayload) -> None:
        if not verify_exact_svm(p, req).is_valid:
            raise AssertionError("a valid Solana payment failed verification")

    rate = record("verify_exact_svm (Solana), distinct payers", *time_passes(check, payloads, passes))
    scheme = ExactSvmScheme()
    raws = [p.raw["payload"] for p in payloads]
    record("  part: decode payload.transaction (solders)", *time_passes(scheme.parse_payload, raws, passes))
    return rate


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0].strip():
        raise RuntimeError(f"the Solana dev chain printed nothing within {timeout} s")
    return box[0]


class SolanaChainProcess:
    """``python -m x402_middleware.devchain --solana`` in its own process (as anvil is), read back over JSON-RPC."""

    def __init__(self, payers: int, fee_payers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "x402_middleware.devchain", "--solana", "--payers", str(payers),
             "--facilitators", str(fee_payers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        started = time.perf_counter()
        self.info: dict[str, Any] = json.loads(_read_line(self.proc.stdout, 30))
        self.ready_s = time.perf_counter() - started

    def rpc(self, method: str, *params: Any) -> Any:
        import httpx

        answer = httpx.post(
            self.info["solana_rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        ).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def usdc(self, owner: str) -> int:
        from x402_middleware.svm import associated_token_address

        ata = str(associated_token_address(owner, self.info["mint"]))
        return int(self.rpc("getTokenAccountBalance", ata)["value"]["amount"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def settle_rows(
    total: int,
    concurrency: int,
    latency_total: int,
    payers: int,
    fee_payers: int,
    settle_all: Callable[..., Any],
    percentile: Callable[[list[float], float], float],
    cpu_seconds: Callable[[int], float],
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """``SolanaFacilitator`` settling pre-signed payments on the LiteSVM dev chain (its own process).

    Returns the rows (one loaded run at ``concurrency``, one at 1 for latency), the problems found when checking
    the chain afterwards (every signature succeeded, balances and fee payers' SOL moved by exactly the expected
    amounts) and facts about the run.
    """
    from x402_middleware.facilitator.solana import SolanaFacilitator
    from x402_middleware.svm import keypair_from

    chain = SolanaChainProcess(payers, fee_payers)
    try:
        info = chain.info
        req = requirement(
            info["solana_pay_to"], info["solana_fee_payers"][0], chain.rpc("getLatestBlockhash")["value"]["blockhash"]
        )
        keys = [bytes(keypair_from(k)) for k in info["solana_payer_secret_keys"]]
        facilitator = SolanaFacilitator(
            info["solana_rpc_url"], info["solana_fee_payer_secret_keys"], network=SOLANA_MAINNET
        )
        watched = [info["solana_pay_to"], *info["solana_payer_addresses"]]
        before = {a: chain.usdc(a) for a in watched}
        fee_payer = info["solana_fee_payers"][0]
        lamports0 = chain.rpc("getBalance", fee_payer)["value"]
        rows: list[dict[str, Any]] = []
        results: list[Any] = []
        payloads: list[PaymentPayload] = []
        try:
            await settle_all(facilitator, req, presign(req, keys, 16), 16)  # warm-up: cluster check, connections
            for n, c in ((total, concurrency), (latency_total, 1)):
                if not n:
                    continue
                batch = presign(req, keys, n)
                cpu0, chain_cpu0 = time.process_time(), cpu_seconds(chain.proc.pid)
                seconds, latencies, got = await settle_all(facilitator, req, batch, c)
                client_cpu, chain_cpu = time.process_time() - cpu0, cpu_seconds(chain.proc.pid) - chain_cpu0
                results += got
                payloads += batch
                lat = sorted(latencies)
                rows.append(
                    {
                        "settlements": n,
                        "concurrency": c,
                        "settlements_per_s": round(n / seconds, 1),
                        "p50_ms": round(percentile(lat, 50), 2),
                        "p95_ms": round(percentile(lat, 95), 2),
                        "p99_ms": round(percentile(lat, 99), 2),
                        "max_ms": round(lat[-1], 2),
                        "client_cpu_ms_per_settle": round(client_cpu * 1000 / n, 3),
                        "chain_cpu_ms_per_settle": round(chain_cpu * 1000 / n, 3),
                    }
                )
        finally:
            await facilitator.aclose()
        problems: list[str] = []
        failed = [r for r in results if not r.success]
        if failed:
            problems.append(
                f"{len(failed)} Solana settlements failed, e.g. {failed[0].error_reason}: {failed[0].error_message}"
            )
        signatures = [r.transaction for r in results if r.success]
        for start in range(0, len(signatures), 256):
            for sig, status in zip(
                signatures[start : start + 256],
                chain.rpc("getSignatureStatuses", signatures[start : start + 256])["value"],
            ):
                if status is None or status["err"] is not None:
                    problems.append(f"transaction {sig} did not succeed: {status}")
        settled_all = len(signatures) + 16  # the warm-up settled too
        expected = dict(before)
        expected[info["solana_pay_to"]] += settled_all * AMOUNT
        for i in range(16):
            expected[info["solana_payer_addresses"][i % len(keys)]] -= AMOUNT
        for p, r in zip(payloads, results):
            if r.success:
                expected[p.payer] -= AMOUNT
        after = {a: chain.usdc(a) for a in watched}
        problems += [f"{a}: expected {expected[a]}, got {after[a]}" for a in watched if after[a] != expected[a]]
        paid_fees = lamports0 - chain.rpc("getBalance", fee_payer)["value"]
        if paid_fees != settled_all * 10_000:
            problems.append(
                f"the fee payer paid {paid_fees} lamports for {settled_all} settlements (expected 10,000 each)"
            )
        facts = {"transactions": settled_all, "moved_to_pay_to": after[watched[0]] - before[watched[0]],
                 "fee_lamports": paid_fees, "chain_ready_s": round(chain.ready_s, 3)}  # fmt: skip
        return rows, problems, facts
    finally:
        chain.stop()
