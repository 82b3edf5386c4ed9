"""RFC 9162 Merkle tree, append-only signed log, site witnesses and fork detection."""
