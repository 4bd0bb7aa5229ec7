"""Operator view of a settlement journal: rows per state, pending, settled-but-unserved and lost payments, settled totals.

python -m x402_middleware.journal --db x402-journal.db [--rpc-url URL --reconcile] [--json]
python -m x402_middleware.journal --db postgresql://x402@db.internal/payments
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from . import open_journal
from ._entry import LOST, PENDING, SETTLED, Journal
from .reconcile import reconcile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m x402_middleware.journal", description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the journal: a SQLite file or a postgresql:// URL")
    parser.add_argument("--rpc-url", help="the chain's JSON-RPC URL (for --reconcile)")
    parser.add_argument("--reconcile", action="store_true", help="reconcile pending rows on chain first")
    parser.add_argument("--from-block", default="earliest", help="first block of the log search (default earliest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def _time(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"{title} ({len(rows)})"] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def report(journal: Journal) -> dict[str, Any]:
    """The operator view as JSON-able data: rows per state, pending and settled-but-unserved rows, settled
    totals by day and by network/asset."""
    by_day = journal.settled_totals()
    overall: dict[tuple[str, str], list[int]] = {}
    for _, network, asset, count, amount in by_day:
        slot = overall.setdefault((network, asset), [0, 0])
        slot[0] += count
        slot[1] += amount
    rows = journal.entries()
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    states["unserved"] = sum(row.unserved for row in rows)
    return {
        "states": states,
        "pending": [asdict(e) | {"amount": str(e.amount)} for e in rows if e.state in PENDING],
        "unserved": [asdict(e) | {"amount": str(e.amount)} for e in rows if e.state == SETTLED and e.unserved],
        # upto settlements refused after the content was served: served, never paid
        "lost": [asdict(e) | {"amount": str(e.amount)} for e in rows if e.state == LOST],
        "settled_by_day": [
            {"day": d, "network": n, "asset": a, "count": c, "amount": str(s)} for d, n, a, c, s in by_day
        ],
        "settled_totals": [
            {"network": n, "asset": a, "count": c, "amount": str(s)} for (n, a), (c, s) in sorted(overall.items())
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.reconcile and not args.rpc_url:
        print("--reconcile needs --rpc-url", file=sys.stderr)
        return 2
    if "://" not in args.db and not os.path.exists(args.db):
        print(f"no journal at {args.db}", file=sys.stderr)
        return 2
    journal = open_journal(args.db)
    try:
        reconciled = []
        if args.reconcile:
            start = int(args.from_block, 0) if args.from_block[:1].isdigit() else args.from_block
            reconciled = reconcile(journal, args.rpc_url, from_block=start)
        view = report(journal)
    finally:
        journal.close()
    if args.json:
        if args.reconcile:
            view["reconciled"] = [asdict(r) for r in reconciled]
        print(json.dumps(view, indent=2))
        return 0
    parts = []
    if args.reconcile:
        rows = [(r.key, r.state, "yes" if r.changed else "no", r.transaction, r.note) for r in reconciled]
        parts.append(_table("reconciled", ("key", "state", "changed", "transaction", "note"), rows))
    parts.append(_table("rows per state", ("state", "count"), sorted(view["states"].items())))
    pending = [
        (p["state"], _time(p["updated_at"]), p["network"], p["payer"], p["amount"], p["transaction"], p["key"])
        for p in view["pending"]
    ]
    parts.append(
        _table("pending", ("state", "updated (UTC)", "network", "payer", "amount", "transaction", "key"), pending)
    )
    unserved = [
        (_time(p["settled_at"]), p["network"], p["payer"], p["amount"], p["transaction"], p["key"])
        for p in view["unserved"]
    ]
    parts.append(
        _table(
            "settled, response not delivered (a retry of the same request is served without a new charge)",
            ("settled (UTC)", "network", "payer", "amount", "transaction", "key"),
            unserved,
        )
    )
    lost = [
        (_time(p["updated_at"]), p["network"], p["payer"], p["amount"], p["reason"], p["key"]) for p in view["lost"]
    ]
    parts.append(
        _table(
            "lost (upto: served, then the settlement was refused; the operator was not paid)",
            ("updated (UTC)", "network", "payer", "amount", "reason", "key"),
            lost,
        )
    )
    days = [(t["day"], t["network"], t["asset"], t["count"], t["amount"]) for t in view["settled_by_day"]]
    parts.append(_table("settled per day", ("day (UTC)", "network", "asset", "count", "amount"), days))
    totals = [(t["network"], t["asset"], t["count"], t["amount"]) for t in view["settled_totals"]]
    parts.append(_table("settled totals", ("network", "asset", "count", "amount"), totals))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
