"""The dev gateway with a settlement journal (``python -m examples.gateway.dev --journal PATH``): every paid call
is recorded settled and served, read back through the operator CLI in another process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests._dev_gateway import dev_gateway
from tests._payments import decode
from tests._servers import ROOT
from x402_middleware import X402Auth
from x402_middleware.client import settlement_of

CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}


def test_dev_gateway_journals_each_paid_call_as_settled_and_served(tmp_path: Path) -> None:
    journal = str(tmp_path / "gateway-journal.db")
    with dev_gateway("--journal", journal) as gw:
        assert gw.info["journal"] == journal
        key = gw.info["payer_private_keys"][0]
        with httpx.Client(base_url=gw.url, auth=X402Auth(key, max_amount_per_payment="$0.10"), timeout=30) as c:
            paid = [c.post("/api/v1/chat/completions", json=CHAT) for _ in range(3)]
        output = "".join(gw.output)
    assert [r.status_code for r in paid] == [200] * 3
    transactions = {settlement_of(r).transaction for r in paid}  # type: ignore[union-attr]
    assert "settlement journal" in output
    view = json.loads(
        subprocess.run(
            [sys.executable, "-m", "x402_middleware.journal", "--db", journal, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert view["states"] == {"settled": 3, "unserved": 0}
    assert view["pending"] == [] and view["unserved"] == []
    (total,) = view["settled_totals"]
    charged = sum(int(decode(r.request.headers["payment-signature"])["accepted"]["amount"]) for r in paid)
    assert total["count"] == 3 and int(total["amount"]) == charged
    assert len(transactions) == 3
