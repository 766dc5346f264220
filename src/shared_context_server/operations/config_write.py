"""config CLIENT --write: merge the entry (or hooks) `config` prints into the client's own
file, keeping everything else in it.

JSON files are parsed, changed and dumped again. TOML (Codex) has no writer among the
dependencies, so our tables are replaced or appended as text, leaving the user's other
text and comments as they were; the result is parsed back with tomllib and must read as
the old file plus our tables, or nothing is written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared_context_server.about import PACKAGE
from shared_context_server.errors import InvalidInput

# Each client's documented file, relative to the current directory unless it starts at
# the home directory. Claude Desktop's depends on the system (_claude_desktop_file).
ENTRY_FILES = {
    "cursor": Path(".cursor/mcp.json"),
    "gemini": Path(".gemini/settings.json"),
    "claude-code": Path(".mcp.json"),  # Claude Code's project scope
    "codex": Path("~/.codex/config.toml"),
}
HOOK_FILES = {
    "claude-code": Path(".claude/settings.json"),
    "cursor": Path(".cursor/hooks.json"),
    "gemini": Path(".gemini/settings.json"),
    "codex": Path("~/.codex/config.toml"),
}
_HEADER = re.compile(r"^[ \t]*\[")


def target_file(
    client: str,
    hooks: bool,
    given: Path | None,
    platform: str = sys.platform,
    env: Mapping[str, str] = os.environ,
) -> Path:
    """The file to write: `given`, or the client's documented one. Raises InvalidInput
    where there is none (generic; Claude Desktop on a system it documents no file for)."""
    if given is not None:
        return given.expanduser().absolute()
    if client == "claude-desktop" and not hooks:
        return _claude_desktop_file(platform, env)
    place = (HOOK_FILES if hooks else ENTRY_FILES).get(client)
    if place is None:
        raise InvalidInput(f"--write: {client} has no file of its own; print it instead.")
    return place.expanduser().absolute()


def _claude_desktop_file(platform: str, env: Mapping[str, str]) -> Path:
    name = Path("Claude", "claude_desktop_config.json")
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / name
    if platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / name
    raise InvalidInput(
        "--write: Claude Desktop documents its config file for macOS and Windows only; "
        "name it with --file (Settings > Developer > Edit Config opens it)."
    )


def write_entry(
    client: str, name: str, entry: dict[str, Any], table: str, given: Path | None
) -> str:
    """Merge the server entry into the client's file (`table` is Codex's TOML of it);
    returns the line that says what was written where. Raises InvalidInput."""
    path = target_file(client, False, given)
    if client == "codex":
        status = write_toml_entry(path, name, table, entry)
        return f"{status} [mcp_servers.{name}] in {path}"
    status = write_json_entry(path, name, entry)
    return f"{status} mcpServers.{name} in {path}"


def write_hooks(client: str, text: str, given: Path | None) -> str:
    """Merge the hooks `config CLIENT --hooks` prints (`text`) into the client's file;
    returns the line that says what was written where. Raises InvalidInput."""
    path = target_file(client, True, given)
    if client == "codex":
        status = write_toml_hooks(path, text, client)
        if tomllib.loads(path.read_text(encoding="utf-8"))["features"]["codex_hooks"] is not True:
            return f"{status} the codex hooks in {path}, but its [features] codex_hooks is off"
    else:
        status = write_json_hooks(path, json.loads(text), client)
    return f"{status} the {client} hooks in {path}"


def write_json_entry(path: Path, name: str, entry: dict[str, Any]) -> str:
    """Put `entry` at mcpServers.NAME in the JSON file; returns "added" or "updated".
    Raises InvalidInput for a file that is not a JSON object (nothing is written)."""
    document = _read_json(path)
    servers = document.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise InvalidInput(f"{path}: mcpServers is not an object; nothing was written.")
    status = "updated" if name in servers else "added"
    servers[name] = entry
    _replace(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return status


def write_json_hooks(path: Path, block: dict[str, Any], host: str) -> str:
    """Add the `hooks` of `block` to the file's event lists, after taking out any of
    ours already there (a rerun replaces them); other keys and hooks stay. Returns
    "added" or "updated". Raises InvalidInput for a file of another shape."""
    # Cursor's "version" first, as its documentation writes it; the file's own wins.
    document = {**{k: v for k, v in block.items() if k != "hooks"}, **_read_json(path)}
    hooks = document.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidInput(f"{path}: hooks is not an object; nothing was written.")
    found = False
    for event, items in list(hooks.items()):
        if not isinstance(items, list):
            raise InvalidInput(f"{path}: hooks.{event} is not a list; nothing was written.")
        kept, removed = _without_ours(items, host)
        hooks[event] = kept
        found = found or removed
    for event, items in block["hooks"].items():
        hooks[event] = hooks.get(event, []) + items
    _replace(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return "updated" if found else "added"


def _without_ours(items: list[Any], host: str) -> tuple[list[Any], bool]:
    """The event's items without our handlers: a matcher group loses ours and goes if it
    is left empty; a bare handler (Cursor) goes if it is ours."""
    kept: list[Any] = []
    removed = False
    for item in items:
        inner = item.get("hooks") if isinstance(item, dict) else None
        if isinstance(inner, list):
            others = [handler for handler in inner if not _is_ours(handler, host)]
            removed = removed or len(others) < len(inner)
            if others:
                kept.append({**item, "hooks": others})
        elif _is_ours(item, host):
            removed = True
        else:
            kept.append(item)
    return kept, removed


def _is_ours(handler: Any, host: str) -> bool:
    """A handler running this package's `hook HOST`, whatever its identity or file."""
    command = handler.get("command") if isinstance(handler, dict) else None
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    names = (PACKAGE, PACKAGE.replace("-", "_"))
    runs_us = any(name in word for word in words for name in names)
    return runs_us and any(words[i : i + 2] == ["hook", host] for i in range(len(words)))


def write_toml_entry(path: Path, name: str, table: str, entry: dict[str, Any]) -> str:
    """Replace the file's `[mcp_servers.NAME]` table with `table`, or append it; returns
    "added" or "updated". Raises InvalidInput for invalid TOML, or a file the table
    cannot be merged into as text (an inline mcp_servers, say)."""
    text, before = _read_toml(path)
    lines = text.splitlines()
    spans = [span for span in _sections(lines) if span[2] == ("mcp_servers", name)]
    if spans:
        start, end, _ = spans[0]
        lines[start:end] = table.splitlines()
        merged = "\n".join(lines) + "\n"
    else:
        merged = _append(text, table)
    servers = dict(before.get("mcp_servers", {}))
    # Our table's own keys are replaced; its subtables ([mcp_servers.NAME.env]) stay.
    kept = {k: v for k, v in servers.get(name, {}).items() if isinstance(v, dict)}
    servers[name] = {**kept, **entry}
    if _parse_merged(path, merged) != {**before, "mcp_servers": servers}:
        raise InvalidInput(f"{path}: cannot add [mcp_servers.{name}] as text; add it by hand.")
    _replace(path, merged)
    return "updated" if spans else "added"


def write_toml_hooks(path: Path, block: str, host: str) -> str:
    """Take our `[[hooks.EVENT]]` groups out of the file and append `block`, and turn
    on `[features] codex_hooks` where the file does not set it. Returns "added" or
    "updated". Raises InvalidInput as write_toml_entry does."""
    text, before = _read_toml(path)
    lines = text.splitlines()
    ours: list[tuple[int, int]] = []
    sections = _sections(lines)
    for index, (start, end, key) in enumerate(sections):
        if len(key) != 2 or key[0] != "hooks" or not lines[start].lstrip().startswith("[["):
            continue
        while index + 1 < len(sections) and sections[index + 1][2] == (*key, "hooks"):
            index += 1
            end = sections[index][1]
        try:
            group = tomllib.loads("\n".join(lines[start:end]))["hooks"][key[1]][0]
        except (tomllib.TOMLDecodeError, LookupError):
            continue  # not a group that reads alone: not one of ours
        handlers = group.get("hooks", [])
        if handlers and all(_is_ours(handler, host) for handler in handlers):
            ours.append((start, end))
    for start, end in reversed(ours):
        while start > 0 and not lines[start - 1].strip():
            start -= 1  # the blank lines that set the group apart go with it
        del lines[start:end]
    merged = _append("\n".join(lines), block)
    expected = dict(before)
    if "features" not in before:
        merged = _append(merged, "[features]\ncodex_hooks = true")
        expected["features"] = {"codex_hooks": True}
    elif "codex_hooks" not in before["features"]:
        merged = _enable_codex_hooks(merged)
        expected["features"] = {**before["features"], "codex_hooks": True}
    ours_now = tomllib.loads(block)["hooks"]
    hooks = {
        event: [*_without_ours(items, host)[0], *ours_now.get(event, [])]
        for event, items in before.get("hooks", {}).items()
    }
    expected["hooks"] = {**ours_now, **hooks}
    if _parse_merged(path, merged) != expected:
        raise InvalidInput(f"{path}: cannot add the hooks as text; add them by hand.")
    _replace(path, merged)
    return "updated" if ours else "added"


def _enable_codex_hooks(text: str) -> str:
    """`codex_hooks = true` as the first line of the file's [features] table."""
    lines = text.splitlines()
    for start, _, key in _sections(lines):
        if key == ("features",):
            lines.insert(start + 1, "codex_hooks = true")
    return "\n".join(lines) + "\n"


def _sections(lines: list[str]) -> list[tuple[int, int, tuple[str, ...]]]:
    """Each table header's line span (header to the next, less the blank and comment
    lines before that next one, which belong to it) and its key path."""
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line) and _key(line)]
    spans = []
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        while end - 1 > start and (not lines[end - 1].strip() or lines[end - 1].lstrip()[0] == "#"):
            end -= 1
        spans.append((start, end, _key(lines[start])))
    return spans


def _key(header: str) -> tuple[str, ...]:
    """A header line's key path, read by tomllib itself (quoted keys, spaces)."""
    try:
        node: Any = tomllib.loads(header)
    except tomllib.TOMLDecodeError:
        return ()
    path: list[str] = []
    while isinstance(node, (dict, list)) and node:
        if isinstance(node, list):
            node = node[0]
            continue
        (key, node), *_ = node.items()
        path.append(key)
    return tuple(path)


def _append(text: str, table: str) -> str:
    text = text.rstrip("\n")
    return (text + "\n\n" if text else "") + table + "\n"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{path} is not valid JSON ({error}); nothing was written.") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path} is not a JSON object; nothing was written.")
    return document


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", {}
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{path} is not valid TOML ({error}); nothing was written.") from None


def _parse_merged(path: Path, merged: str) -> dict[str, Any]:
    try:
        return tomllib.loads(merged)
    except tomllib.TOMLDecodeError:
        raise InvalidInput(f"{path}: cannot merge into it as text; add it by hand.") from None


def _replace(path: Path, text: str) -> None:
    """Write `text` whole or not at all: a temporary file beside it, then os.replace,
    keeping an existing file's mode. A symlink (dotfiles kept elsewhere) stays one: its
    target is replaced."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
