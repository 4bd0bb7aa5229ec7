// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Permit2} from "./Permit2.sol";
import {x402BasePermit2Proxy} from "./x402BasePermit2Proxy.sol";

/// @title x402ExactPermit2Proxy - settles x402 `exact` payments signed with Permit2
/// @notice Transfers exactly the signed amount to the witness's `to`. Canonical address
/// 0x402085c248EeA27D92E8b30b2C58ed07f9E20001; anyone may submit the transaction.
contract x402ExactPermit2Proxy is x402BasePermit2Proxy {
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    struct Witness {
        address to;
        uint256 validAfter;
    }

    constructor(address permit2) x402BasePermit2Proxy(permit2) {}

    /// @notice Settle with the payer's Permit2 signature (the payer has approved Permit2 already).
    function settle(
        Permit2.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settleExact(permit, owner, witness, signature);
        emit Settled();
    }

    /// @notice Settle after trying the payer's EIP-2612 permit for Permit2 (gasless approval), atomically.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        Permit2.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleExact(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _settleExact(
        Permit2.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter));
        _settle(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
