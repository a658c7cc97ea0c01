"""Access policy: who may see and do what. Every route asks here; no route decides alone.

- officers see the clips their camera recorded (clip.officer_id == their officer id);
- evidence officers see the force's clips and manage cases;
- CPS and partner users see only what was shared with them, until the share expires;
- auditors read the ledger and all access records, footage only with an explicit grant;
- admins manage users, devices and policy and see no footage;
- a case's members see its clips.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence.accounts.models import Role


@dataclass(frozen=True)
class Principal:
    """An authenticated person, however they logged in (local password or the force's IdP)."""

    user_id: str
    username: str
    role: Role
    officer_id: str | None = None

    @property
    def actor(self) -> str:
        """How the ledger names them."""
        return f"user:{self.username}"
