"""Retention: policy, schedule, the disposal queue and holds (evidence/retention/service.py)."""

from __future__ import annotations

from api.schemas import Out


class RuleOut(Out):
    keep_days: int | None
    review_days: int | None
    auto_dispose: bool


class PolicyOut(Out):
    default_category: str
    notice_days: int
    rules: dict[str, RuleOut]


class DisposalOut(Out):
    id: str
    clip_id: str
    state: str
    due_at: str
    rule: str  # the policy that made it due
    decided_by: str | None
    decided_at: str | None
    reason: str | None
    disposed_at: str | None
    error: str | None


class QueuedDisposalOut(DisposalOut):
    filename: str | None
    category: str | None
    sha256: str
    recorded_at: str | None


class DisposalQueueOut(Out):
    items: list[QueuedDisposalOut]


class ScheduleItemOut(Out):
    clip_id: str
    filename: str | None
    category: str | None
    recorded_at: str | None
    rule: str | None
    retain_until: str
    held: bool
    outcome: str
    disposal: DisposalOut | None


class ScheduleOut(Out):
    items: list[ScheduleItemOut]


class HoldOut(Out):
    """A hold; its reasons are null and `reason_withheld` true for those who may not read
    them (evidence.access.hold_shown)."""

    id: str
    clip_id: str | None
    case_id: str | None
    reason: str | None
    placed_by: str
    placed_at: str
    released_at: str | None
    release_reason: str | None
    reason_withheld: bool | None = None  # present only when the reasons are withheld


class HoldListOut(Out):
    items: list[HoldOut]


class ClipCaseOut(Out):
    id: str
    reference: str
    closed: bool


class ClipRetentionOut(Out):
    """A clip's retention as its detail shows it (evidence.retention.service.retention_of)."""

    kept_as_exhibit: bool
    cases: list[ClipCaseOut]
    rule: str | None
    retain_until: str | None
    locked_until: str | None
    disposed_at: str | None
    holds: list[HoldOut]
    disposal: DisposalOut | None
