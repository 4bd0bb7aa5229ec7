"""Schemes on EVM chains (CAIP-2 namespace ``eip155``): :mod:`.exact` (EIP-3009)."""
