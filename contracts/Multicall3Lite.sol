// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Multicall3Lite - the one Multicall3 entry point x402 uses
/// @notice Only `tryAggregate`, ABI-compatible with Multicall3's function of the same name (selector 0xbce38bd7).
/// @dev Installed on local chains with `anvil_setCode` at Multicall3's canonical address
/// 0xcA11bde05977b3631167028862bE2a173976CA11. It has no storage, so copying the runtime code is enough.
contract Multicall3Lite {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Calls each target in order; with `requireSuccess`, any failing call reverts the whole batch.
    function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool success, bytes memory ret) = calls[i].target.call(calls[i].callData);
            if (requireSuccess) {
                require(success, "Multicall3: call failed");
            }
            returnData[i] = Result(success, ret);
        }
    }
}
