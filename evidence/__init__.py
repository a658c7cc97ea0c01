"""The evidence store's domain core.

Everything that matters (the ledger, storage, media, ingest, access policy, bundles,
retention, verification) lives here and is testable without a web server. This package
imports neither `api` nor `workers`.
"""

__version__ = "0.1.0"
