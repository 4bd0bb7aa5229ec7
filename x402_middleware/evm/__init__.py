"""EVM chain code shared by the EVM schemes, the on-chain facilitator and the dev chain.

EIP-712 / EIP-3009 digests and signatures (:mod:`.eip3009`). Nothing outside this package and
``schemes/evm/`` names EVM specifics; ``devchain/`` builds on this package, never the other way round.
"""
