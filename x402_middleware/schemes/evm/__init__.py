"""Schemes on EVM chains (CAIP-2 namespace ``eip155``): :mod:`.exact` (EIP-3009 or Permit2), :mod:`.upto`
(Permit2, settled for the actual amount); :mod:`.permit2` is what both Permit2 payments share."""
