// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Permit2} from "./Permit2.sol";
import {x402BasePermit2Proxy} from "./x402BasePermit2Proxy.sol";

/// @title x402UptoPermit2Proxy - settles x402 `upto` payments: any amount up to the signed maximum
/// @notice The witness names the facilitator allowed to choose the amount (it must be msg.sender), so nobody
/// else can settle the payer's maximum. Canonical address 0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002.
contract x402UptoPermit2Proxy is x402BasePermit2Proxy {
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    error UnauthorizedFacilitator();
    error AmountExceedsPermitted();

    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    constructor(address permit2) x402BasePermit2Proxy(permit2) {}

    /// @notice Transfer `amount` (at most `permit.permitted.amount`) with the payer's Permit2 signature.
    function settle(
        Permit2.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkCaller(permit, amount, witness);
        _settleUpto(permit, amount, owner, witness, signature);
        emit Settled();
    }

    /// @notice As `settle`, after trying the payer's EIP-2612 permit for Permit2 (gasless approval), atomically.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        Permit2.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkCaller(permit, amount, witness);
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleUpto(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _checkCaller(Permit2.PermitTransferFrom calldata permit, uint256 amount, Witness calldata witness)
        private
        view
    {
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
    }

    function _settleUpto(
        Permit2.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash =
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        _settle(permit, amount, owner, witness.to, witness.validAfter, witnessHash, WITNESS_TYPE_STRING, signature);
    }
}
