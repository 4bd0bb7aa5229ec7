"""The pure helpers of ``benchmarks/peers.py``: nothing here installs, starts or times a peer (the suite stays offline)."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def peers() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import peers as module

        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _rows(values: dict[tuple[int, str], tuple[float, float]]) -> list[dict[str, Any]]:
    return [
        {"scenario": "chat", "concurrency": c, "server": s, "added_ms": {"p50": p50, "p95": p50, "p99": p99}}
        for (c, s), (p50, p99) in values.items()
    ]


def test_docstring_examples(peers: ModuleType) -> None:
    runner = doctest.DocTestRunner()
    found = [t for t in doctest.DocTestFinder().find(peers) if t.examples]
    assert {t.name.rsplit(".", 1)[-1] for t in found} >= {"added_ms", "summary_line", "through_emulator"}
    for test in found:
        runner.run(test)
    assert runner.failures == 0


def test_summary_line_names_a_skipped_peer_n_a(peers: ModuleType) -> None:
    rows = _rows(
        {(1, "ours"): (0.41, 0.9), (1, "portkey"): (2.5, 9.0), (16, "ours"): (3.0, 4.0), (16, "portkey"): (25.0, 131.0)}
    )
    line = peers.summary_line(rows)
    assert line.startswith("SUMMARY added p50 C=1: ours 0.41 ms, litellm n/a ms, portkey 2.50 ms; C=16: ours 3.00 ms,")
    assert "added p99 C=1: ours 0.90 ms, litellm n/a ms, portkey 9.00 ms; C=16: ours 4.00 ms" in line


def test_targets_compare_ours_with_each_peer_at_c16(peers: ModuleType) -> None:
    rows = _rows(
        {
            (1, "ours"): (0.6, 0.9),
            (16, "ours"): (3.0, 40.0),
            (16, "litellm"): (140.0, 210.0),
            (16, "portkey"): (20.0, 30.0),
        }
    )
    for row in rows:
        if row["server"] == "ours":
            row["cpu_ms_per_call"] = 0.35 if row["concurrency"] == 16 else 0.5
    checks = dict(peers.targets_report(rows))
    verdicts = {text.split(" ", 1)[0] + " " + text.split()[2]: ok for text, ok in checks.items()}
    assert verdicts["C=1 p50"] is False  # 0.6 > 0.5
    assert verdicts["C=1 p99"] is True
    assert [ok for text, ok in checks.items() if "litellm" in text] == [True]  # 40 < 210
    assert [ok for text, ok in checks.items() if "portkey" in text] == [False]  # 40 > 30
    cpu = [(text, ok) for text, ok in checks.items() if "CPU" in text]
    assert cpu == [(cpu[0][0], True)] and "0.350" in cpu[0][0] and "C=16" in cpu[0][0]


def test_through_emulator_reads_a_stream(peers: ModuleType) -> None:
    chunks = [
        {"system_fingerprint": "fp_emulator", "choices": [{"delta": {"content": p}}]} for p in ("Echo", " (m):", " hi")
    ]
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    assert peers.through_emulator(sse, "hi")
    assert not peers.through_emulator(sse.replace("fp_emulator", "fp_other"), "hi")
    assert not peers.through_emulator(sse, "something else")


def test_litellm_config_routes_the_model_to_the_emulator(peers: ModuleType) -> None:
    text = peers.litellm_config("nvidia/x", "x", "http://127.0.0.1:9/v1")
    assert '- model_name: "nvidia/x"' in text
    assert 'model: "openai/x"' in text and 'api_base: "http://127.0.0.1:9/v1"' in text
    assert "dangerously_permit_weak_or_unset_master_key: true" in text


def test_tree_cpu_counts_a_child_process(peers: ModuleType) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert set(peers.tree_pids(os.getpid())) >= {os.getpid(), child.pid}
        assert peers.tree_cpu_seconds(os.getpid()) >= peers.tree_cpu_seconds(child.pid) >= 0
    finally:
        child.kill()
        child.wait()
