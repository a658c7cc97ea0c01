"""The evidence store's domain core.

Everything that matters (the ledger, storage, media, ingest, access policy, bundles,
retention, verification) lives here and is testable without a web server. This package
imports none of the outer layer's packages, `api`, `workers` and `cli` (tests/test_layers.py).
"""

__version__ = "0.1.0"
