"""Checking an RFC 3161 timestamp token over a ledger checkpoint, offline.

What a court bundle's `ledger/checkpoint.tsr` is checked with (evidence.verify.bundle), and
what the store checks a TSA's reply with before keeping it (evidence.timestamps, which talks
to the TSA and stores the tokens). Needs cryptography and rfc3161-client, nothing of the
server: no database, no settings, no network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from evidence.errors import TimestampInvalid

_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says."""

    gen_time: dt.datetime
    serial: int
    tsa_name: str  # the TSA's name from the token, else its certificate subject


def verify_token(token: bytes, data: bytes, ca_pem: bytes) -> TimestampInfo:
    """Check a stored DER TimeStampResp over `data` against the PEM root(s), offline.

    Checks (rfc3161-client's verifier, plus ours): status granted; the CMS signature, with
    the TSA certificate chaining to `ca_pem` and valid at genTime; exactly one signer, whose
    certificate's extendedKeyUsage is critical and exactly id-kp-timeStamping (RFC 3161
    §2.3); the message imprint is SHA-256 of `data`. Raises TimestampInvalid naming the failure.
    """
    return check_response(decode_response(token), data, ca_pem, nonce=None)


def decode_response(der: bytes) -> TimeStampResponse:
    try:
        return decode_timestamp_response(der)
    except ValueError as e:
        raise TimestampInvalid(f"not a DER RFC 3161 TimeStampResp: {e}") from e


def _roots(ca_pem: bytes) -> list[x509.Certificate]:
    try:
        roots = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise TimestampInvalid(f"TSA root file is not PEM certificates: {e}") from e
    if not roots:
        raise TimestampInvalid("TSA root file holds no certificate")
    return roots


def check_response(
    response: TimeStampResponse, data: bytes, ca_pem: bytes, *, nonce: int | None
) -> TimestampInfo:
    # Status first: a rejection carries no token, and the parser's token accessors panic
    # (a BaseException) on a missing one.
    if PKIStatus(response.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        said = "; ".join(response.status_string) or "no reason given"
        raise TimestampInvalid(f"TSA refused the request (status {response.status}): {said}")
    info = response.tst_info
    # We only ever ask for SHA-256; a reply over another hash answers some other request.
    if info.message_imprint.hash_algorithm != _SHA256_OID:
        raise TimestampInvalid("token's message imprint is not SHA-256")
    if info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampInvalid("token is over different data (message imprint mismatch)")
    if nonce is not None and info.nonce != nonce:
        raise TimestampInvalid("token's nonce is not the one we sent (replayed reply?)")
    builder = VerifierBuilder()
    for root in _roots(ca_pem):
        builder = builder.add_root_certificate(root)
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        # Verifies the CMS signature and chain at genTime (OpenSSL PKCS7_verify), exactly
        # one SignerInfo, the signer certificate's critical id-kp-timeStamping EKU, the
        # nonce if given, and the imprint again.
        builder.build().verify_message(response, data)
    except (VerificationError, ValueError) as e:
        raise TimestampInvalid(f"timestamp token does not verify: {e}") from e
    signer = _signer_certificate(response)
    _require_critical_timestamping_eku(signer)
    return TimestampInfo(
        info.gen_time.astimezone(dt.UTC), info.serial_number, _tsa_name(info, signer)
    )


def _signer_certificate(response: TimeStampResponse) -> x509.Certificate:
    """The certificate named by the (single, signed) SignerInfo's issuer and serial."""
    (si,) = response.signed_data.signer_infos  # the verifier insisted on exactly one
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == si.issuer and cert.serial_number == si.serial_number:
            return cert
    raise TimestampInvalid("token does not carry its signer's certificate (request certReq)")


def _require_critical_timestamping_eku(cert: x509.Certificate) -> None:
    # RFC 3161 §2.3: the TSA certificate MUST have exactly this one critical EKU. The
    # library checks critical + present; we also refuse a multi-purpose certificate.
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampInvalid("TSA certificate has no extendedKeyUsage") from None
    if not eku.critical or list(eku.value) != [x509.ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampInvalid("TSA certificate's EKU is not exactly a critical timeStamping")


def _tsa_name(info: object, signer: x509.Certificate) -> str:
    try:
        name = info.name  # type: ignore[attr-defined]  # raises when the token names no TSA
    except Exception:  # noqa: BLE001 - the binding raises ValueError for "no name"
        return signer.subject.rfc4514_string()
    value = getattr(name, "value", name)
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)
