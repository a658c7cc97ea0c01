"""Liveness and readiness, for load balancers: ok or not per check, nothing else."""

from __future__ import annotations

from typing import Literal

from api.schemas import Out


class HealthOut(Out):
    status: Literal["ok"]


class ReadyChecksOut(Out):
    database: Literal["ok", "failed"]
    storage: Literal["ok", "failed", "disk full"]


class ReadyOut(Out):
    status: Literal["ok", "unavailable"]
    checks: ReadyChecksOut
