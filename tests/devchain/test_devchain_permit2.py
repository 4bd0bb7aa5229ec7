"""Permit2 and the x402 Permit2 proxies on the dev chain: at their canonical addresses, with Permit2's EIP-712
domain (no version) and the original type strings, computed here independently of the package's code."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from x402_middleware.devchain import DevChain, encode_call
from x402_middleware.devchain.chain import EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY
from x402_middleware.evm.abi import decode_output
from x402_middleware.schemes.evm.permit2 import domain_separator


def _view(chain: DevChain, to: str, signature: str, types: str) -> object:
    return decode_output(types, chain.call(to, encode_call(signature)))[0]


def test_contracts_sit_at_the_canonical_addresses_with_permit2s_domain(any_chain: DevChain) -> None:
    chain = any_chain
    for address in (PERMIT2_ADDRESS, EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY):
        assert len(chain.rpc("eth_getCode", address, "latest")) > 1000
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text="EIP712Domain(string name,uint256 chainId,address verifyingContract)"),
                keccak(text="Permit2"),
                chain.chain_id,
                PERMIT2_ADDRESS,
            ],
        )
    )
    assert (
        _view(chain, PERMIT2_ADDRESS, "DOMAIN_SEPARATOR()", "(bytes32)") == expected == domain_separator(chain.chain_id)
    )
    for proxy in (EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY):
        assert str(_view(chain, proxy, "PERMIT2()", "(address)")).lower() == PERMIT2_ADDRESS.lower()
    assert _view(chain, EXACT_PERMIT2_PROXY, "WITNESS_TYPE_STRING()", "(string)") == (
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
    )
    assert _view(chain, UPTO_PERMIT2_PROXY, "WITNESS_TYPE_STRING()", "(string)") == (
        "Witness witness)TokenPermissions(address token,uint256 amount)"
        "Witness(address to,address facilitator,uint256 validAfter)"
    )
    assert _view(chain, PERMIT2_ADDRESS, "_TOKEN_PERMISSIONS_TYPEHASH()", "(bytes32)") == keccak(
        text="TokenPermissions(address token,uint256 amount)"
    )
