"""The tamper-evident ledger: RFC 9162 Merkle log, hash chain and signed checkpoints."""
