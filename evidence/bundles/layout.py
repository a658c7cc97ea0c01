"""A court bundle's layout: its format string and the names of the files in the ZIP.

Pure data, shared by the builder (manifest.py, service.py, statement.py) and the offline
verifier (evidence.verify.bundle), which must not import the builder's database code.
"""

from __future__ import annotations

# verify_proofs.py ships inside every bundle and runs alone (standard library only), so the
# two ledger files it reads are named there; every other module takes the names from here.
from evidence.bundles.verify_proofs import CHECKPOINT, ENTRIES

FORMAT = "evidence-store court bundle v1"  # manifest.json's "format"

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
SIGNING_KEY = "signing-key.pem"
SUMS = "SHA256SUMS"
VERIFY_TXT = "VERIFY.txt"  # the recipe: checking the bundle with openssl, sha256sum, python3
STATEMENT_HTML = "statement/continuity.html"
STATEMENT_PDF = "statement/continuity.pdf"
LEDGER_KEY = "ledger/key.txt"
TOKEN = "ledger/checkpoint.tsr"
TSA_CA = "ledger/tsa-ca.pem"  # the TSA's CA chain as configured; a court checks it independently
PROOF_SCRIPT = "verify_proofs.py"  # standard-library checker of every inclusion proof (VERIFY.txt)

__all__ = [
    "CHECKPOINT",
    "ENTRIES",
    "FORMAT",
    "LEDGER_KEY",
    "MANIFEST",
    "PROOF_SCRIPT",
    "SIGNATURE",
    "SIGNING_KEY",
    "STATEMENT_HTML",
    "STATEMENT_PDF",
    "SUMS",
    "TOKEN",
    "TSA_CA",
    "VERIFY_TXT",
]
