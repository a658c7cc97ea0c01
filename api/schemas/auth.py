"""Signing in and one's own account (evidence/identity/signin.py, evidence/accounts/own.py)."""

from __future__ import annotations

from api.schemas import Out


class IssuedTokenOut(Out):
    access_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds


class TotpStartedOut(Out):
    """A new authenticator secret; sign-in is unchanged until a code from it is confirmed."""

    secret: str
    uri: str  # otpauth://
    qr_svg: str


class RecoveryCodesOut(Out):
    recovery_codes: list[str]  # shown this once
