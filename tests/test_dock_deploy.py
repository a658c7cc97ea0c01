"""deploy/dock/: the docking PC's systemd unit and udev rule, checked against systemd's own
parser and against the agent's command line, so that they cannot rot."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from evidence_dock.cli import check, parser
from tests.fixtures.services import missing

DOCK = Path(__file__).resolve().parents[1] / "deploy" / "dock"
UNIT = DOCK / "evidence-dock.service"
RULES = DOCK / "99-evidence-dock.rules"


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit file, in order; keys may repeat, as systemd allows."""
    entries, section = [], ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            section = m[1]
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", line)
        assert m and section, f"{UNIT.name}:{number}: not 'Key=value' in a section: {raw!r}"
        entries.append((section, m[1], m[2]))
    return entries


def values(entries: list[tuple[str, str, str]], section: str, key: str) -> list[str]:
    return [v for s, k, v in entries if (s, k) == (section, key)]


def test_the_unit_runs_the_agent_in_watch_mode_hardened() -> None:
    entries = unit_entries(UNIT.read_text())
    assert [s for s in dict.fromkeys(s for s, _, _ in entries)] == ["Unit", "Service", "Install"]
    (exec_start,) = values(entries, "Service", "ExecStart")
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "evidence-dock"
    # The arguments are the agent's own: parsed by its parser, as the service will run them
    # (API URL and key come from the EnvironmentFile).
    p = parser()
    args = p.parse_args([*argv[1:], "--api", "https://evidence.example"])
    assert (args.watch, args.state_dir) == (Path("/media/bwv"), Path("/var/lib/evidence-dock"))
    args.watch = Path("/")  # check() wants the watch root to exist; on the dock it does
    check(p, args)
    service = {k: values(entries, "Service", k) for s, k, _ in entries if s == "Service"}
    assert service["EnvironmentFile"] == ["/etc/evidence-dock/dock.env"]
    assert service["Restart"] == ["on-failure"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/var/lib/evidence-dock"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["StateDirectory"] == ["evidence-dock"]
    assert values(entries, "Install", "WantedBy") == ["multi-user.target"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze (Debian's systemd) is not installed")
    # The agent is not installed at the unit's path on this machine, and `verify` checks that
    # the command exists: the copy runs another program with the same arguments.
    text = UNIT.read_text()
    installed = re.search(r"^ExecStart=(\S+)", text, re.M)[1]  # type: ignore[index]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={installed}", "ExecStart=/usr/bin/env"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are warnings with exit 0: any word about this unit fails.
    about_it = [line for line in done.stderr.splitlines() if UNIT.name in line]
    assert done.returncode == 0 and about_it == [], done.stderr


RULE_PAIR = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*'
)
RULE_KEYS = {
    "ACTION",
    "SUBSYSTEM",
    "KERNEL",
    "ENV",
    "ATTRS",
    "ATTR",
    "DRIVERS",
    "RUN",
    "TAG",
    "GOTO",
    "LABEL",
    "OPTIONS",
}
MATCH_OPS = {"==", "!="}


def rule_lines(text: str) -> list[list[re.Match[str]]]:
    """Each rule as its key-operator-value pairs; a malformed line fails the test."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: keep each rule on one line"
        pairs, at = [], 0
        while at < len(line):
            m = RULE_PAIR.match(line, at)
            assert m, f'line {number}, column {at + 1}: not KEY op "value": {line[at:]!r}'
            assert m["key"] in RULE_KEYS, f"line {number}: unknown key {m['key']}"
            pairs.append(m)
            at = m.end()
            if at < len(line):
                assert line[at] == ",", f"line {number}, column {at + 1}: expected ','"
                at += 1
        rules.append(pairs)
    return rules


def test_the_udev_rule_mounts_camera_storage_read_only_where_the_service_watches() -> None:
    (rule,) = rule_lines(RULES.read_text())
    matches = {(m["key"], m["attr"]): m["value"] for m in rule if m["op"] in MATCH_OPS}
    assert matches[("ACTION", None)] == "add" and matches[("SUBSYSTEM", None)] == "block"
    (run,) = [m for m in rule if m["key"] == "RUN"]
    assert run["op"] == "+=" and run["attr"] == "program"
    argv = shlex.split(run["value"])
    assert argv[0] == "/usr/bin/systemd-mount" and "--no-block" in argv
    (options,) = [a.split("=", 1)[1] for a in argv if a.startswith("--options=")]
    assert "ro" in options.split(","), "camera storage is mounted read-only"
    watch_root = re.search(r"--watch (\S+)", UNIT.read_text())[1]  # type: ignore[index]
    assert Path(argv[-1]).parent == Path(watch_root)
    assert argv[-2] == "$devnode"
