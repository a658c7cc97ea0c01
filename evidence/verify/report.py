"""A verification report: one line per check, failing checks name the bad item."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        mark = "PASS" if self.ok else "FAIL"
        return f"{mark}  {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    echo: Callable[[str], None] | None = None

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        check = Check(name, ok, detail)
        self.checks.append(check)
        if self.echo:
            self.echo(check.line())
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.echo:
            self.echo(f"NOTE  {text}")

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]
