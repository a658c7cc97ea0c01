"""Access policy: who may see and do what. Every route asks here; no route decides alone.

- officers see the clips their camera recorded (clip.officer_id == their officer id);
- evidence officers see the force's clips and manage cases;
- CPS and external users (partner agencies, defence) see only what was shared with them or
  their organisation, until the share expires; an exhibit shared as "redacted only" opens
  its redacted copy to them, never the original; an external user sees nothing unless they
  signed in with a TOTP code (docs/disclosure.md);
- auditors read the ledger and all access records, footage only with an explicit grant;
- admins manage users, devices and policy and see no footage;
- a case's members see its clips.

Beyond footage, the same policy decides the fields of a clip's record (`custody_entry_visible`,
`bookmark_filter`): who looked at a clip, why and from where is for auditors (everyone else
sees only their own viewings), and a bookmark's note is for its author's side (`side`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.orm import Session

from evidence import clock
from evidence.accounts.models import Organisation, Role, User
from evidence.cases.models import (
    WATERMARK_PREFIX,
    AccessGrant,
    Case,
    CaseItem,
    CaseMember,
    Share,
    ShareExhibit,
    watermark_kind,
)
from evidence.clips.models import Bookmark, Clip
from evidence.errors import AccessDenied, InvalidInput, NotFound, SecondFactorRequired


@dataclass(frozen=True)
class Principal:
    """An authenticated person, however they logged in (local password or the force's IdP)."""

    user_id: str
    username: str
    role: Role
    officer_id: str | None = None
    # Whether this sign-in used a second factor (a TOTP or recovery code): an external
    # recipient without one sees nothing.
    second_factor: bool = False

    @property
    def actor(self) -> str:
        """How the ledger names them."""
        return f"user:{self.username}"


# -- what each role may do at all (the route-level gate) ------------------------------------
# Every API route names one action here (or is public / for devices); the authorization
# matrix test walks the app's routes and fails on any route without a rule.

R = Role
# The people evidence is disclosed to: they see what a share gives them, nothing else.
RECIPIENT_ROLES = frozenset({R.cps, R.external})
ACTIONS: dict[str, frozenset[Role]] = {
    "clips.search": frozenset({R.officer, R.evidence_officer, R.cps, R.external, R.auditor}),
    "clips.read": frozenset({R.officer, R.evidence_officer, R.cps, R.external, R.auditor}),
    "clips.view_footage": frozenset({R.officer, R.evidence_officer, R.cps, R.external, R.auditor}),
    "clips.tag": frozenset({R.officer, R.evidence_officer}),
    # The category decides retention (e.g. non-evidential: disposed of automatically), so it
    # is the evidence officers' call, never the recording officer's about their own footage.
    "clips.categorise": frozenset({R.evidence_officer}),
    "clips.bookmark": frozenset({R.officer, R.evidence_officer, R.cps}),
    "clips.redact": frozenset(
        {R.evidence_officer}
    ),  # black boxes / muting (evidence/redactions.py)
    "cases.create": frozenset({R.evidence_officer}),
    "cases.read": frozenset({R.evidence_officer, R.cps, R.external, R.auditor, R.officer}),
    "cases.manage": frozenset({R.evidence_officer}),
    "shares.manage": frozenset({R.evidence_officer}),
    # Proofs and checkpoints: anyone who checks the custody of what they work on, recipients
    # too (a proof is hashes only; it lets them check an entry whose free text the policy
    # withholds from them by its leaf hash, `custody_entry_withheld`).
    "ledger.read": frozenset({R.auditor, R.evidence_officer, R.cps, R.external}),
    # Whole entries, i.e. every access record with its reason and source address and every
    # record of every case: the auditors' (an inquiry may be about an evidence officer).
    "ledger.entries": frozenset({R.auditor}),
    "audit.read": frozenset({R.auditor}),
    "grants.manage": frozenset({R.admin}),
    "users.manage": frozenset({R.admin}),
    # Who evidence may be disclosed to (docs/disclosure.md); the evidence officers read the
    # list to choose a recipient.
    "organisations.manage": frozenset({R.admin}),
    "organisations.read": frozenset({R.admin, R.evidence_officer, R.auditor}),
    # The second person of the two-person rule (evidence/accounts/approvals.py): another
    # admin, never the one who asked.
    "accounts.approve": frozenset({R.admin}),
    # Every signed-in person: their own password and two-factor sign-in.
    "account.manage": frozenset(R),
    "devices.manage": frozenset({R.admin}),
    "session.read": frozenset(R),
    "bundles.request": frozenset({R.evidence_officer}),
    # CPS: only bundles of cases visible to them (an active share), checked per bundle.
    "bundles.read": frozenset({R.evidence_officer, R.cps, R.external, R.auditor}),
    # Retention: the schedule and queue are open to those who answer for it; deciding a
    # disposal and placing holds are the evidence officers' (the policy is the admin's config).
    "retention.read": frozenset({R.evidence_officer, R.admin, R.auditor}),
    "retention.decide": frozenset({R.evidence_officer}),
    "holds.manage": frozenset({R.evidence_officer}),
    # The camera register (docs/cameras.md): who held which camera when decides whose clips
    # an officer sees, so keeping it is the evidence officers' and admins' job.
    "cameras.read": frozenset({R.admin, R.evidence_officer, R.auditor}),
    "cameras.manage": frozenset({R.admin, R.evidence_officer}),
    # Public submissions (docs/public-submissions.md): inviting a member of the public to send
    # footage, and deciding what they sent (quarantined until then), are evidence officers' work.
    "submissions.invite": frozenset({R.evidence_officer}),
    "submissions.review": frozenset({R.evidence_officer}),
    # Naming the officer of a clip opens it to them: an evidence officer's call, with a reason.
    "clips.attribute": frozenset({R.evidence_officer}),
}


def allowed(principal: Principal, action: str) -> bool:
    return principal.role in ACTIONS[action]


# What an external recipient may do before a second factor: see who they are and set one up.
WITHOUT_SECOND_FACTOR = frozenset({"account.manage", "session.read"})


def needs_second_factor(principal: Principal) -> bool:
    """An external recipient signed in without a TOTP code: they see nothing until they do."""
    return principal.role == Role.external and not principal.second_factor


def require(principal: Principal, action: str) -> None:
    if not allowed(principal, action):
        raise AccessDenied(f"a {principal.role.value} may not {action.replace('.', ' ')}")
    if action not in WITHOUT_SECOND_FACTOR and needs_second_factor(principal):
        raise SecondFactorRequired(
            "disclosed evidence opens only after signing in with a TOTP code: set up "
            "two-factor sign-in on your account page (/ui/account), sign out, and sign in "
            "again with a code from your authenticator"
        )


# -- which objects (the row-level rules, as SQL so lists and counts obey them too) ----------


def active_shares_of(principal: Principal) -> Select[tuple[str]]:
    """The ids of the shares open to `principal`: made with them or with their organisation,
    neither revoked nor expired."""
    now = clock.now()
    their_org = select(User.organisation_id).where(
        User.id == principal.user_id, User.organisation_id.is_not(None)
    )
    return select(Share.id).where(
        or_(Share.user_id == principal.user_id, Share.organisation_id.in_(their_org)),
        Share.revoked_at.is_(None),
        Share.expires_at > now,
    )


def _shared_cases_of(principal: Principal) -> Select[tuple[str]]:
    return select(Share.case_id).where(Share.id.in_(active_shares_of(principal)))


def _shared_clips_of(principal: Principal, *, originals: bool) -> Select[tuple[str]]:
    """The clips open to a recipient through their shares: a whole-case share's exhibits and
    a share's chosen ones. `originals`: only those some share gives as the original, i.e.
    not marked redacted-only in it."""
    active = active_shares_of(principal)
    marked = select(ShareExhibit.clip_id).where(
        ShareExhibit.share_id == Share.id, ShareExhibit.clip_id == CaseItem.clip_id
    )
    if originals:
        marked = marked.where(ShareExhibit.redacted_only.is_(True))
    whole = (
        select(CaseItem.clip_id)
        .join(Share, Share.case_id == CaseItem.case_id)
        .where(Share.id.in_(active), Share.whole_case.is_(True))
    )
    if originals:
        whole = whole.where(~marked.exists())
    chosen = select(ShareExhibit.clip_id).where(ShareExhibit.share_id.in_(active))
    if originals:
        chosen = chosen.where(ShareExhibit.redacted_only.is_(False))
    return whole.union(chosen)  # type: ignore[return-value]


def shared_redacted_only(session: Session, principal: Principal, clip_id: str) -> bool:
    """Whether `principal` is a recipient who may have the clip's redacted copy but not its
    original (every share giving them the clip marks it redacted-only)."""
    if principal.role not in RECIPIENT_ROLES:
        return False
    if session.scalar(
        select(Clip.id).where(Clip.id == clip_id, clip_filter(principal, footage=True))
    ):
        return False
    return (
        session.scalar(
            select(Clip.id).where(
                Clip.id == clip_id, Clip.id.in_(_shared_clips_of(principal, originals=False))
            )
        )
        is not None
    )


def recipient_copy(session: Session, principal: Principal, clip_id: str, kind: str) -> bool:
    """Whether `kind` is a copy a recipient may play without the original: a redacted copy
    of an exhibit given to them as redacted only, or their own share's watermarked copy.
    A watermarked copy of someone else's share is refused to any recipient (it names them)."""
    if principal.role not in RECIPIENT_ROLES:
        return False
    if kind.startswith(WATERMARK_PREFIX):
        mine = {watermark_kind(i) for i in session.scalars(active_shares_of(principal))}
        if kind not in mine:
            raise AccessDenied("this watermarked copy was made for another recipient")
        return True
    return kind.startswith("redaction-") and shared_redacted_only(session, principal, clip_id)


@dataclass(frozen=True)
class CopyToPlay:
    """The copy of a clip a person's player opens: `kind` for the stream and the viewing,
    `label` saying which copy it is (None for the force's usual review copy), and whether the
    original may be downloaded beside it."""

    kind: str | None  # None: nothing to play yet (e.g. no redacted copy made)
    label: str | None
    original: bool


def copy_to_play(
    session: Session, principal: Principal, clip_id: str, kinds: set[str]
) -> CopyToPlay:
    """Which copy of the clip `principal` plays, of the derivatives `kinds` it has: for a
    recipient, their share's watermarked copy if one of their shares asks for it, else the
    latest redacted copy if the exhibit is theirs as redacted only (never the original), else
    the proxy; for anyone else the proxy. Assumes they may read the clip."""
    redacted_only = shared_redacted_only(session, principal, clip_id)
    if principal.role in RECIPIENT_ROLES:
        shares = session.scalars(
            select(Share)
            .where(Share.id.in_(active_shares_of(principal)), Share.watermark.is_(True))
            .order_by(Share.created_at, Share.id)
        )
        for share in shares:
            if watermark_kind(share.id) in kinds:
                who = (
                    session.get(Organisation, share.organisation_id)
                    if share.organisation_id
                    else None
                )
                person = session.get(User, share.user_id) if share.user_id else None
                name = who.name if who else (person.full_name or person.username) if person else ""
                return CopyToPlay(
                    watermark_kind(share.id), f"Watermarked for {name}", not redacted_only
                )
    if redacted_only:
        redactions = sorted(
            (k for k in kinds if re.fullmatch(r"redaction-[1-9][0-9]*", k)),
            key=lambda k: int(k.split("-")[1]),
        )
        return CopyToPlay(redactions[-1] if redactions else None, "Redacted copy", False)
    return CopyToPlay("proxy" if "proxy" in kinds else None, None, True)


def derivative_visible(session: Session, principal: Principal, kind: str) -> bool:
    """Whether a clip's record lists a derivative to `principal`: a share's watermarked copy
    names its recipient, so other recipients do not see it (the force does)."""
    if principal.role not in RECIPIENT_ROLES or not kind.startswith(WATERMARK_PREFIX):
        return True
    return kind in {watermark_kind(i) for i in session.scalars(active_shares_of(principal))}


def recipient_context(
    s: Session, principal: Principal, *, case_id: str | None = None, clip_id: str | None = None
) -> dict[str, Any]:
    """What a recipient's access entry says about the share it came through: the share, its
    organisation and purpose (the oldest active one, if several). Empty for anyone else."""
    if principal.role not in RECIPIENT_ROLES:
        return {}
    q = select(Share).where(Share.id.in_(active_shares_of(principal)))
    if case_id is not None:
        q = q.where(Share.case_id == case_id)
    if clip_id is not None:
        cases = select(CaseItem.case_id).where(CaseItem.clip_id == clip_id)
        q = q.where(Share.case_id.in_(cases))
    share = s.scalar(q.order_by(Share.created_at, Share.id).limit(1))
    if share is None:
        return {}
    org = s.get(Organisation, share.organisation_id) if share.organisation_id else None
    return {
        "share": share.id,
        "organisation": org.name if org else None,
        "purpose": share.purpose,
    }


def _member_cases_of(principal: Principal) -> Select[tuple[str]]:
    return select(CaseMember.case_id).where(CaseMember.user_id == principal.user_id)


def _granted_clips_of(principal: Principal) -> Select[tuple[str]]:
    now = clock.now()
    active = (
        (AccessGrant.user_id == principal.user_id)
        & AccessGrant.revoked_at.is_(None)
        & (AccessGrant.expires_at > now)
        & AccessGrant.approved_at.is_not(None)
    )  # a grant awaiting its second person opens nothing
    direct = select(AccessGrant.clip_id).where(active, AccessGrant.clip_id.is_not(None))
    via_case = (
        select(CaseItem.clip_id)
        .join(AccessGrant, AccessGrant.case_id == CaseItem.case_id)
        .where(active)
    )
    return direct.union(via_case)  # type: ignore[return-value]


def _clips_in(cases: Select[tuple[str]]) -> ColumnElement[bool]:
    return Clip.id.in_(select(CaseItem.clip_id).where(CaseItem.case_id.in_(cases)))


def clip_filter_parts(principal: Principal, *, footage: bool) -> list[ColumnElement[bool]]:
    """The clips `principal` may see (`footage`: may play), as conditions whose OR is the rule
    (none: nothing). A list sorted and paged runs each part as its own query and merges them
    (evidence/clips/paging.py): "own clips OR clips of my cases" in one WHERE makes the planner
    scan, while each part alone walks an index (docs/search.md)."""
    role = principal.role
    member = _clips_in(_member_cases_of(principal))
    if role == Role.evidence_officer:
        return [true()]
    if role == Role.officer:
        own = [Clip.officer_id == principal.officer_id] if principal.officer_id else []
        return [*own, member]
    if needs_second_factor(principal):
        return []
    if role in RECIPIENT_ROLES:
        return [Clip.id.in_(_shared_clips_of(principal, originals=footage)), member]
    if role == Role.auditor:
        return [true()] if not footage else [Clip.id.in_(_granted_clips_of(principal))]
    return []  # admin: manages the system, sees no footage


def clip_filter(principal: Principal, *, footage: bool) -> ColumnElement[bool]:
    """A WHERE clause selecting the clips `principal` may see (`footage`: may play)."""
    parts = clip_filter_parts(principal, footage=footage)
    return or_(*parts) if parts else false()


def case_filter(principal: Principal) -> ColumnElement[bool]:
    role = principal.role
    member = Case.id.in_(_member_cases_of(principal))
    if role in (Role.evidence_officer, Role.auditor):
        return true()
    if needs_second_factor(principal):
        return false()
    if role in RECIPIENT_ROLES:
        return or_(Case.id.in_(_shared_cases_of(principal)), member)
    if role == Role.officer:
        return member
    return false()


def visible_clip(session: Session, principal: Principal, clip_id: str, *, footage: bool) -> Clip:
    """The clip if `principal` may see it (and play it, with `footage`).

    A clip they may not know of is "not found"; one they may know of but not play is
    "access denied" (an auditor without a grant).
    """
    clip = session.scalar(
        select(Clip).where(Clip.id == clip_id, clip_filter(principal, footage=False))
    )
    if clip is None:
        raise NotFound(f"no clip {clip_id} that you can see")
    if (
        footage
        and session.scalar(
            select(Clip.id).where(Clip.id == clip_id, clip_filter(principal, footage=True))
        )
        is None
    ):
        if principal.role in RECIPIENT_ROLES:
            raise AccessDenied(
                "this exhibit was disclosed to you as its redacted copy only: the original "
                "is not open to you"
            )
        raise AccessDenied("playing this clip needs an explicit grant for your role")
    return clip


def visible_case(session: Session, principal: Principal, case_id: str) -> Case:
    case = session.scalar(select(Case).where(Case.id == case_id, case_filter(principal)))
    if case is None:
        raise NotFound(f"no case {case_id} that you can see")
    return case


def require_case_footage(session: Session, principal: Principal, case_id: str) -> None:
    """Refuse unless `principal` may play every exhibit of the case: a court bundle carries
    the originals, so taking one is taking footage and follows the same grant rule (an
    auditor needs a grant covering each exhibit, e.g. one for the whole case)."""
    barred = session.scalar(
        select(CaseItem.clip_id)
        .join(Clip, Clip.id == CaseItem.clip_id)
        .where(CaseItem.case_id == case_id, ~clip_filter(principal, footage=True))
        .limit(1)
    )
    if barred is not None:
        raise AccessDenied(
            "a court bundle carries footage: downloading it needs footage "
            "access to every exhibit (for your role, an explicit grant)"
        )


# -- which fields of a clip's record ------------------------------------------------------------

# Entries that say who looked at footage (or may, under a grant), why, and from where. They
# can reveal an inquiry (a grant for a professional-standards review of the recording officer)
# and so are for auditors; everyone else sees only their own.
ACCESS_RECORD_TYPES = frozenset(
    {
        "clip.viewed",
        "clip.downloaded",
        "clip.thumbnail_viewed",
        "clip.original_downloaded",
        "grant.created",
        "grant.revoked",
    }
)


# What an external recipient's custody timeline shows: how the clip was stored and derived
# (its continuity), and their own looking at it.
EXTERNAL_TIMELINE_TYPES = frozenset(
    {
        "upload.declared",
        "upload.completed",
        "clip.ingested",
        "derivative.created",
        "clip.disposed",
        "checkpoint.timestamped",
        "clip.viewed",
        "clip.downloaded",
    }
)


def sees_access_records(principal: Principal) -> bool:
    return principal.role == Role.auditor


def side(role: Role | str) -> str:
    """Whose notes a person shares: the prosecutor's ("cps"), the force's ("force": officers,
    evidence officers, auditors, admins) or, for an external recipient, their own
    ("external"). A CPS note on a clip can be privileged legal advice and a force note can be
    an unshared line of inquiry: no side reads another's."""
    r = Role(role)
    return "cps" if r == Role.cps else "external" if r == Role.external else "force"


def note_authors(principal: Principal) -> Select[tuple[str]]:
    """The users whose bookmark notes `principal` may read: those of their side (an external
    recipient: only their own; the defence never reads the force's or the CPS's notes)."""
    kind = side(principal.role)
    if kind == "external":
        return select(User.id).where(User.id == principal.user_id)
    cps = User.role == Role.cps.value
    force = User.role.not_in([Role.cps.value, Role.external.value])
    return select(User.id).where(cps if kind == "cps" else force)


def bookmark_filter(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause on Bookmark: the bookmarks whose notes `principal` may read (their side's)."""
    return Bookmark.user_id.in_(note_authors(principal))


def custody_entry_visible(principal: Principal, entry: dict[str, Any], bookmarks: set[str]) -> bool:
    """Whether a ledger entry about a clip shows in its custody timeline for `principal`;
    `bookmarks`: the ids of the clip's bookmarks they may read (`bookmark_filter`)."""
    kind = entry.get("type")
    if principal.role == Role.external and (
        kind not in EXTERNAL_TIMELINE_TYPES or entry.get("watermark")
    ):  # a watermarked copy's entry names its recipient
        # Who else the clip went to, tags and categories, other people's notes and reasons:
        # the force's business, not the recipient's.
        return False
    if kind in ACCESS_RECORD_TYPES and not sees_access_records(principal):
        users = entry.get("subject", {}).get("user")
        own = principal.user_id in (users if isinstance(users, list) else [users])
        return own and entry.get("actor") == principal.actor
    if kind == "clip.bookmarked":
        return entry.get("bookmark") in bookmarks
    return True


# A legal hold's reason can name an inquiry (e.g. a complaint against the officer who
# recorded the clip). Evidence officers place holds and auditors oversee them; everyone else
# who may read the clip (its officer, the CPS, an admin running retention) sees that a hold
# stands, not why.
HOLD_ENTRY_TYPES = frozenset({"hold.placed", "hold.released"})
HOLD_REASON_FIELDS = ("reason", "release_reason")


def sees_hold_reasons(principal: Principal) -> bool:
    return principal.role in (Role.evidence_officer, Role.auditor)


def hold_shown(principal: Principal, hold: dict[str, Any]) -> dict[str, Any]:
    """A hold as `principal` may read it: without its reasons unless `sees_hold_reasons`."""
    if sees_hold_reasons(principal):
        return hold
    return {**hold, **dict.fromkeys(HOLD_REASON_FIELDS), "reason_withheld": True}


# Free text the force's staff write into entries about a clip (a redaction's reason, a
# viewing's reason, a disposal's reason, a re-attribution's reason, notes, descriptions) and
# who asked for what: the force's business, not a recipient's. A recipient reads the facts
# they check custody with (type, time, hashes, keys, sizes, recipes, index, leaf hash, proof),
# and the free text of their own entries. Looked for at the top of an entry and one level down
# (e.g. `redaction.reason`), except in the recipe, which ffmpeg's plan writes, not a person.
RECIPIENT_WITHHELD_KEYS = frozenset(
    {
        "reason",
        "release_reason",
        "note",
        "notes",
        "description",
        "detail",
        "details",
        "comment",
        "requested_by",
        "approved_by",
    }
)
MACHINE_WRITTEN = frozenset({"recipe"})


def _force_free_text(entry: dict[str, Any]) -> list[str]:
    out = []
    for key, value in entry.items():
        if key in RECIPIENT_WITHHELD_KEYS:
            out.append(key)
        elif isinstance(value, dict) and key not in MACHINE_WRITTEN:
            out.extend(f"{key}.{k}" for k in value if k in RECIPIENT_WITHHELD_KEYS)
    return out


def disposal_shown(principal: Principal, disposal: dict[str, Any]) -> dict[str, Any]:
    """A clip's disposal as `principal` may read it: a recipient reads that and when it was
    disposed of and under which rule, not the reason given nor (external) who decided."""
    if principal.role not in RECIPIENT_ROLES:
        return disposal
    who = {"decided_by": None} if principal.role == Role.external else {}
    return {**disposal, "reason": None, **who}


def custody_entry_withheld(principal: Principal, entry: dict[str, Any]) -> list[str]:
    """The fields of a custody-timeline entry `principal` may not read, as paths (`reason`,
    `redaction.reason`): the timeline shows the entry without them, and says so. Its leaf hash
    still covers the whole entry, so the reader checks it by that hash and its inclusion proof
    (docs/disclosure.md, "What a recipient reads of the ledger")."""
    actor = entry.get("actor")
    if principal.role in RECIPIENT_ROLES and actor != principal.actor:
        # An external recipient is not told who at the force did what, either.
        person = principal.role == Role.external and str(actor).startswith("user:")
        return [*(["actor"] if person else []), *_force_free_text(entry)]
    if entry.get("type") in HOLD_ENTRY_TYPES and not sees_hold_reasons(principal):
        return [k for k in HOLD_REASON_FIELDS if k in entry]
    return []


def without(entry: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """`entry` less the fields at `paths` (`custody_entry_withheld`'s answer)."""
    out = dict(entry)
    for path in paths:
        key, _, sub = path.partition(".")
        if not sub:
            out.pop(key, None)
        elif isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != sub}
    return out


def attribution_reason_shown(principal: Principal) -> bool:
    """Whether `principal` reads why an evidence officer re-attributed a clip (free text of
    the force's): not a recipient."""
    return principal.role not in RECIPIENT_ROLES


def check_reason(reason: str | None, reasons: tuple[str, ...] | list[str]) -> str:
    """A reason is one of the configured codes, optionally `code: free text`; `other`
    needs the text."""
    text = (reason or "").strip()
    code, _, detail = text.partition(":")
    code, detail = code.strip().lower(), detail.strip()
    if code not in reasons:
        raise InvalidInput(
            "playing or downloading footage needs a reason: one of "
            + ", ".join(reasons)
            + " (optionally followed by ': details')"
        )
    if code == "other" and len(detail) < 5:
        raise InvalidInput("reason 'other' needs details: 'other: why you need this footage'")
    if len(text) > 500:
        raise InvalidInput("a reason is at most 500 characters")
    return f"{code}: {detail}" if detail else code


REASON_MAX = 500


def ledger_reason(text: str | None, what: str, *, minimum: int = 3) -> str:
    """A free-text reason that goes into the permanent ledger with `what`, trimmed, checked
    here (not only by the API's form limits) so that no caller can write an unbounded one."""
    text = (text or "").strip()
    if not minimum <= len(text) <= REASON_MAX:
        raise InvalidInput(
            f"{what} needs a reason of {minimum}-{REASON_MAX} characters (it goes in the ledger)"
        )
    return text


_ADDRESS_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def client_address(source: str | None) -> str:
    """The client's address as the ledger keeps it: an IP address in its normal form, a short
    plain name (e.g. "unknown"), or "invalid". Behind a proxy it comes from a forwarded header,
    i.e. from the client, and must not put arbitrary text into the permanent log."""
    text = (source or "").strip()
    if not text:
        return "unknown"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text if _ADDRESS_NAME.fullmatch(text) else "invalid"
