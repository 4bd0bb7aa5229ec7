"""The committed artifact must be what ``scripts/build_contracts.mjs`` compiles from ``contracts/`` today.

Needs node and ``npm ci`` (the pinned npm ``solc``); CI installs both, so a missing compiler fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from x402_middleware.devchain._abi import load_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]


def _strip_metadata(bytecode: str) -> str:
    # solc appends CBOR metadata (IPFS hash of the sources, compiler version) followed by its 2-byte length.
    raw = bytes.fromhex(bytecode[2:])
    length = int.from_bytes(raw[-2:], "big")
    return raw[: -(length + 2)].hex()


def _compile() -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is required to check the contract artifact (install Node 20+, then `npm ci`)"
    result = subprocess.run(
        [node, "scripts/build_contracts.mjs", "--stdout"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # a failure is asserted below, with the script's stderr
    )
    assert result.returncode == 0, f"build_contracts.mjs failed (did you run `npm ci`?):\n{result.stderr}"
    return dict(json.loads(result.stdout))


def test_committed_artifact_matches_sources() -> None:
    fresh, committed = _compile(), load_artifact()
    assert fresh["compiler"] == committed["compiler"]
    assert (
        sorted(fresh["contracts"])
        == sorted(committed["contracts"])
        == [
            "Multicall3Lite",
            "Permit2",
            "TestUSDC",
            "x402ExactPermit2Proxy",
            "x402UptoPermit2Proxy",
        ]
    )
    for name, new in fresh["contracts"].items():
        old = committed["contracts"][name]
        assert new["abi"] == old["abi"], f"{name}: ABI changed; run `node scripts/build_contracts.mjs`"
        for key in ("bytecode", "deployedBytecode"):
            assert _strip_metadata(new[key]) == _strip_metadata(old[key]), (
                f"{name}.{key} differs from contracts/{name}.sol; run `node scripts/build_contracts.mjs`"
            )
    selectors = committed["contracts"]["TestUSDC"]["methodIdentifiers"].values()
    assert {"e3ee160e", "cf092995", "e94a0102"} <= set(selectors)
