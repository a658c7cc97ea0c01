"""Route gates: every route declares who may call it, in one of three ways.

- `Depends(gate("clips.search"))`: a logged-in person whose role the policy allows
  (evidence.access.ACTIONS); the route then asks the policy about the object itself;
  `Depends(ui_gate("clips.search"))` is the same for the web UI's pages, where the person
  comes from the session cookie (api.ui.session) instead of a bearer header;
- `Depends(current_device)`: a docking device (api.auth);
- `Depends(public)`: anyone (health, the ledger's key and checkpoint, presigned URLs that
  carry their own signature, the login form).

The authorization-matrix test walks the app's routes and fails on a route with none.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends

from api.auth import current_principal
from api.ui.session import ui_principal
from evidence.access import ACTIONS, Principal, require


def gate(action: str) -> Callable[..., Principal]:
    if action not in ACTIONS:
        raise KeyError(f"no access rule for action {action!r} in evidence.access.ACTIONS")

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        require(principal, action)
        return principal

    dependency.action = action  # type: ignore[attr-defined]  # read by the matrix test
    return dependency


def ui_gate(action: str) -> Callable[..., Principal]:
    """`gate` for the UI's pages: the session cookie names the person (a redirect to the
    sign-in page when there is none), the same policy decides."""
    if action not in ACTIONS:
        raise KeyError(f"no access rule for action {action!r} in evidence.access.ACTIONS")

    def dependency(principal: Principal = Depends(ui_principal)) -> Principal:
        require(principal, action)
        return principal

    dependency.action = action  # type: ignore[attr-defined]  # read by the matrix test
    return dependency


def public() -> None:
    """Marks a route anyone may call; its safety is argued where it is declared."""
