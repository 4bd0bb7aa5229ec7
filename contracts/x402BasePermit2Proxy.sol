// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Permit2} from "./Permit2.sol";

/// @notice EIP-2612 `permit`, which the proxies call to give Permit2 an allowance in the same transaction.
interface IERC20Permit {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

/// @title x402BasePermit2Proxy - what the x402 Permit2 proxies share
/// @notice A proxy is the `spender` a payer names in a Permit2 `PermitWitnessTransferFrom` signature. The witness
/// (checked by Permit2 against the signature) binds the recipient `to` and `validAfter`, so whoever submits the
/// transaction can only move the payer's tokens to that recipient. Mirrors the x402 Foundation's proxies:
/// the same functions, events, custom errors and witness type strings, so unmodified clients sign for them.
/// @dev Written for local chains only. The Permit2 address is an immutable (baked into the runtime code) and
/// the re-entrancy lock is transient storage (EIP-1153), so the code can be copied with `anvil_setCode` to the
/// canonical proxy addresses.
abstract contract x402BasePermit2Proxy {
    /// @notice The Permit2 contract this proxy spends through.
    Permit2 public immutable PERMIT2;

    bool private transient _entered;

    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    event Settled();
    event SettledWithPermit();
    event EIP2612PermitFailedWithReason(address indexed token, address indexed owner, string reason);
    event EIP2612PermitFailedWithPanic(address indexed token, address indexed owner, uint256 errorCode);
    event EIP2612PermitFailedWithData(address indexed token, address indexed owner, bytes data);

    error InvalidPermit2Address();
    error InvalidDestination();
    error PaymentTooEarly();
    error InvalidOwner();
    error InvalidAmount();
    error Permit2612AmountMismatch();
    error ReentrancyGuardReentrantCall();

    constructor(address permit2) {
        if (permit2 == address(0)) revert InvalidPermit2Address();
        PERMIT2 = Permit2(permit2);
    }

    modifier nonReentrant() {
        if (_entered) revert ReentrancyGuardReentrantCall();
        _entered = true;
        _;
        _entered = false;
    }

    /// @dev Move `amount` (> 0) from `owner` to `to` through Permit2, once `validAfter` has passed.
    function _settle(
        Permit2.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        address to,
        uint256 validAfter,
        bytes32 witnessHash,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        if (amount == 0) revert InvalidAmount();
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();
        PERMIT2.permitWitnessTransferFrom(
            permit,
            Permit2.SignatureTransferDetails({to: to, requestedAmount: amount}),
            owner,
            witnessHash,
            witnessTypeString,
            signature
        );
    }

    /// @dev Try the payer's EIP-2612 permit for Permit2 (its value must be the signed Permit2 amount). A failing
    /// permit does not revert (an allowance may already be there); it is reported in an event.
    function _executePermit(address token, address owner, EIP2612Permit calldata permit2612, uint256 permittedAmount)
        internal
    {
        if (permit2612.value != permittedAmount) revert Permit2612AmountMismatch();
        try IERC20Permit(token).permit(
            owner, address(PERMIT2), permit2612.value, permit2612.deadline, permit2612.v, permit2612.r, permit2612.s
        ) {} catch Error(string memory reason) {
            emit EIP2612PermitFailedWithReason(token, owner, reason);
        } catch Panic(uint256 errorCode) {
            emit EIP2612PermitFailedWithPanic(token, owner, errorCode);
        } catch (bytes memory data) {
            emit EIP2612PermitFailedWithData(token, owner, data);
        }
    }
}
