"""Everything a process needs to act on the store, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from evidence.config import Settings
from evidence.db import Database, get_database
from evidence.ledger.keys import load_or_create_signer
from evidence.ledger.service import Ledger

if TYPE_CHECKING:
    from evidence.storage import ObjectStore


@dataclass
class Context:
    settings: Settings
    # State that sign-in keeps per context, that is per app or test (each has its own): made
    # on first use by its owner, never passed in, never copied to another context.
    # evidence.identity's: the rate-limit window, TOTP memory, token key and JWKS cache.
    identity_state: Any = field(default=None, init=False, repr=False, compare=False)
    # evidence.submissions': the public links' rate-limit windows.
    submission_limits: Any = field(default=None, init=False, repr=False, compare=False)
    # api.ui.session's: the HMAC key of UI sessions and CSRF tokens.
    ui_session_key: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @cached_property
    def db(self) -> Database:
        return get_database(self.settings)

    @cached_property
    def ledger(self) -> Ledger:
        signer = load_or_create_signer(
            self.settings.resolved_ledger_key_path(), self.settings.ledger_origin
        )
        return Ledger(self.db, signer, self.settings.ledger_origin)

    @cached_property
    def viewing_key(self) -> bytes:
        """The HMAC key of viewing URLs (evidence/viewings.py), made on first use."""
        from evidence.viewings import load_or_create_key

        return load_or_create_key(self.settings.secrets_dir())

    @cached_property
    def store(self) -> ObjectStore:
        from evidence.storage import open_store

        return open_store(self.settings)
