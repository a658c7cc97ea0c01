"""Everything a process needs to act on the store, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from evidence.config import Settings
from evidence.db import Database, get_database
from evidence.ledger.keys import load_or_create_signer
from evidence.ledger.service import Ledger

if TYPE_CHECKING:
    from evidence.storage import ObjectStore


@dataclass
class Context:
    settings: Settings

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
    def store(self) -> ObjectStore:
        from evidence.storage import open_store

        return open_store(self.settings)
