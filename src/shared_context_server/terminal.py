"""How the command line shows things to a person: message lines, tables, reports, counters."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from shared_context_server.blackboard.messages import Message

from shared_context_server import clock
from shared_context_server.message_text import message_text

_PALETTE = ("36", "33", "35", "32", "34", "31")
_STYLE = {"id": "2", "visibility": "1"}  # the sender's colour comes from its name


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr (stdout carries the results)."""
    print(message, file=sys.stderr, flush=True)


def colour_enabled(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


DAY = "%Y-%m-%d"
TIME = "%H:%M:%S"
MINUTE = f"{DAY} %H:%M"


def local_time(stamp: str) -> datetime:
    """A stored UTC timestamp in this machine's time zone."""
    return clock.parse(stamp).astimezone()


def short_time(stamp: str | None, form: str = MINUTE) -> str:
    """A stored time as a person reads it: local, to the minute unless `form` says."""
    return local_time(stamp).strftime(form) if stamp else "-"


class MessagePrinter:
    """`tail`'s lines: the models' rendering (message_text.py) with the local time and
    colour; the content indented, so no content line passes for a header.

    A date line appears whenever the (local) day changes, so each line carries only the time.
    """

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.colour = colour_enabled(stream)
        self.day: str | None = None

    def _paint(self, text: str, role: str) -> str:
        if role == "sender":
            code = "1;" + _PALETTE[sum(text.encode()) % len(_PALETTE)]
            return paint(text, code, self.colour)
        return paint(text, _STYLE[role], self.colour)

    def header(self, line: str) -> None:
        print(paint(line, "2", self.colour), file=self.stream, flush=True)

    def print(self, message: Message) -> None:
        stamp = message["created_at"]
        day = short_time(stamp, DAY)
        out: list[str] = []
        if day != self.day:
            self.day = day
            out.append(paint(f"-- {day} --", "2", self.colour))
        out.append(message_text(message, short_time(stamp, TIME), self._paint))
        print("\n".join(out), file=self.stream, flush=True)


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def sessions_table(sessions: list[dict[str, Any]]) -> str:
    """One row per session: id, status, messages, last activity, creator, purpose."""
    header = ("SESSION", "STATUS", "MSGS", "LAST ACTIVITY", "CREATED BY", "PURPOSE")
    rows = [
        (
            s["id"],
            s["status"],
            str(s["message_count"]),
            short_time(s["last_activity"]),
            s["created_by"],
            s["purpose"],
        )
        for s in sessions
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    room = max(shutil.get_terminal_size((120, 24)).columns - sum(widths) - 10, 20)
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) if i != 2 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join([*cells, _fit(row[5], room)]).rstrip())
    return "\n".join(lines)


def claims_table(claims: list[dict[str, Any]]) -> str:
    """One row per claim: id, holder, since, until, target (shared marked), reason."""
    header = ("ID", "HOLDER", "SINCE", "UNTIL", "TARGET", "REASON")
    rows = [
        (
            str(c["id"]),
            c["holder"],
            short_time(c["since"]),
            short_time(c["until"]),
            c["target"] + (" (shared)" if c["shared"] else ""),
            c["reason"] or "",
        )
        for c in claims
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    room = max(shutil.get_terminal_size((120, 24)).columns - sum(widths) - 10, 20)
    lines = []
    for row in [header, *rows]:
        cells = [row[i].rjust(widths[i]) if i == 0 else row[i].ljust(widths[i]) for i in range(5)]
        lines.append("  ".join([*cells, _fit(row[5], room)]).rstrip())
    return "\n".join(lines)


def size_text(n: float) -> str:
    """Bytes in decimal units (1 MB = 1,000,000 bytes), as doctor and backup print them."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.0f} B"


def process_lines(processes: list[dict[str, Any]], where: str, hosts: bool = False) -> list[str]:
    """doctor's count of live server processes, then one line each (with its host where
    several machines share the database)."""
    lines = [f"processes     {counted(len(processes), 'live server processes')} {where}"]
    for p in processes:
        who = p["agent_id"] or "(agent not known yet)"
        client = f" via {p['client_name']}" if p["client_name"] else ""
        host = f" on {p['host']}" if hosts else ""
        lines.append(
            f"  pid {p['pid']:<8} {who}/{p['agent_type']}{client}{host}, started "
            f"{short_time(p['started_at'])}, seen {short_time(p['last_seen'], TIME)}"
        )
    return lines


def doctor_report(data: dict[str, Any]) -> str:
    lines = [
        f"database      {data['path']}",
        f"release       shared-context-server {data['package_version']} "
        f"(schema version {data['expected_schema_version']})",
    ]
    if data["exists"]:
        lines.append(
            f"size          {size_text(data['size_bytes'])} (WAL {size_text(data['wal_bytes'])}, "
            f"shared memory {size_text(data['shm_bytes'])})"
        )
        modes = data.get("permissions", {})
        lines.append("permissions   " + ", ".join(f"{part} {mode}" for part, mode in modes.items()))
        lines.append(f"filesystem    {data['network_filesystem'] or 'local'}")
        if "free_bytes" in data:
            lines.append(f"free space    {size_text(data['free_bytes'])}")
        lines.append(f"journal mode  {data.get('journal_mode') or 'unknown'}")
        if "integrity" in data:
            integrity = data["integrity"]
            shown = integrity if integrity in ("ok", "quick_check ok") else "FAILED"
            lines.append(f"integrity     {shown}")
        if "schema_version" in data:
            lines.append(
                f"schema        version {data['schema_version']}"
                + (
                    ""
                    if data["schema_version"] == data["expected_schema_version"]
                    else f" (this release writes {data['expected_schema_version']})"
                )
            )
        if "sessions" in data:
            lines.append(
                f"contents      {counted(data['sessions'], 'sessions')}, "
                f"{counted(data.get('messages', 0), 'messages')}"
            )
        lines += process_lines(data.get("processes", []), "on this file")
    for item in data["warnings"]:
        lines.append(f"warning: {item['warning']}\n  what to do: {item['fix']}")
    for item in data["problems"]:
        lines.append(f"PROBLEM: {item['problem']}\n  what to do: {item['fix']}")
    if not data["ok"]:
        lines.append(f"{counted(len(data['problems']), 'problems')} found")
    elif data.get("integrity") == "quick_check ok":  # never "ok" on a check that was partial
        lines.append("no problems found by the quick check; the full check was not run")
    else:
        lines.append("ok")
    return "\n".join(lines)


def prune_report(report: dict[str, dict[str, int]], dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    lines = []
    for name, counts in report.items():
        main = counts[name]
        if not main:
            continue
        extra = ", ".join(counted(n, label) for label, n in counts.items() if label != name)
        lines.append(f"{verb} {counted(main, name)}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines) if any(c[n] for n, c in report.items()) else "nothing to prune"


class Progress:
    """A counter on stderr for work that takes a while: silent for the first second and
    when stderr is not a terminal, so quick runs and scripts see nothing."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, delay: float = 1.0) -> None:
        self.label = label
        self.stream = stream
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False
        self.live = stream.isatty()

    def update(self, done: int, total: int | None = None) -> None:
        if not self.live or time.monotonic() - self.start < self.delay:
            return
        of = f"/{total:,}" if total else ""
        self.stream.write(f"\r{self.label} {done:,}{of}")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def counted(n: int, plural: str) -> str:
    """`n` and a plural noun, made singular for one: "1 archived session", "2 audit entries"."""
    if n == 1:
        for many, one in (("ies", "y"), ("sses", "ss"), ("s", "")):
            if plural.endswith(many):
                plural = plural.removesuffix(many) + one
                break
    return f"{n:,} {plural}"
