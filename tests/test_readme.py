"""The README documents every tool, subcommand and environment variable, and CI runs its
test command verbatim."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from shared_context_server.cli import COMMANDS
from shared_context_server.config import ENVIRONMENT, TOOLSETS
from shared_context_server.errors import BlackboardError
from shared_context_server.instructions import AGENT_INSTRUCTIONS
from shared_context_server.server.toolsets import tools_for

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
# The reference a reader is sent to from the README: every tool's arguments and limits,
# every error code.
TOOLS_DOC = (ROOT / "docs" / "TOOLS.md").read_text()
EVERYTHING = " ".join([README, *(d.read_text() for d in DOCS)])
README_BUDGET = 24_000


@pytest.mark.parametrize("tool", sorted(tools_for(frozenset(TOOLSETS))))
def test_every_tool_is_named_in_the_readme_and_has_a_row_in_the_docs(tool: str) -> None:
    assert f"`{tool}`" in README
    assert f"| `{tool}` |" in EVERYTHING.replace(README, "")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_a_row_in_the_readme(command: str) -> None:
    assert f"| `{command}` |" in README


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT))
def test_every_environment_variable_has_a_row_in_the_readme(variable: str) -> None:
    # The whole row: its defaults come from the domain's constants (config.ENVIRONMENT).
    assert f"| `{variable}` | {ENVIRONMENT[variable]} |" in README


def _codes(error: type[BlackboardError]) -> set[str]:
    return {error.code}.union(*(_codes(sub) for sub in error.__subclasses__()))


@pytest.mark.parametrize("code", sorted(_codes(BlackboardError)))
def test_every_error_code_has_a_row_in_the_tools_reference(code: str) -> None:
    assert f"| `{code}` |" in TOOLS_DOC


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_readme_shows_what_config_instructions_prints() -> None:
    blocks = re.findall(r"```text\n(.*?)\n```", README, re.S)
    assert textwrap.fill(AGENT_INSTRUCTIONS, width=88) in blocks


def _figures() -> list[str]:
    """What the README says of each limit and default, written from the domain's constants."""
    from shared_context_server.blackboard import audit, changes, inbox, memory, messages, search
    from shared_context_server.blackboard.limits import (
        DEFAULT_FUZZY_THRESHOLD,
        DEFAULT_LIMITS,
        DEFAULT_PAGE_LIMIT,
        DEFAULT_SEARCH_LIMIT,
        DEFAULT_WAIT_S,
        MAX_JSON_DEPTH,
        MAX_MEMORY_KEY_CHARS,
        MAX_SUBSCRIPTIONS,
    )
    from shared_context_server.blackboard.records.rows import MAX_QUERY_LIMIT
    from shared_context_server.storage.sqlite.database import BUSY_TIMEOUT_MS
    from shared_context_server.storage.sqlite.migrate import WAL_SIZE_LIMIT

    limits, page, wait = DEFAULT_LIMITS, DEFAULT_PAGE_LIMIT, int(changes.MAX_WAIT_S)
    kb, mb = 1024, 1024 * 1024
    year = 365 * 24 * 3600
    return [
        f"the latest `limit` ({page}, max {messages.MAX_CONTEXT_LIMIT})",
        f"once it holds {limits.max_page_chars:,} characters of content",
        f"`timeout_s` ({DEFAULT_WAIT_S}, max {wait})",
        f"`limit` ({page}, max {inbox.MAX_INBOX_LIMIT}), `has_more`; `wait_s` (0, max {wait})",
        f"`fuzzy_threshold` ({DEFAULT_FUZZY_THRESHOLD}), `limit` ({DEFAULT_SEARCH_LIMIT}, "
        f"max {search.MAX_LIMIT})",
        f"`value` (up to {limits.max_memory_bytes // kb} KB)",
        "`expires_in` seconds (up to a year)" if year == memory.MAX_EXPIRES_IN else "one year",
        f"`limit` ({page}, max {audit.MAX_LIMIT}), `cursor`",
        f"Keys are 1-{MAX_MEMORY_KEY_CHARS} characters",
        f"content over {limits.max_content_chars:,} characters, metadata over "
        f"{limits.max_metadata_bytes // kb} KB of JSON, purpose over "
        f"{limits.max_purpose_chars:,} characters, a memory value over "
        f"{limits.max_memory_bytes // kb} KB",
        f"more than {MAX_JSON_DEPTH} levels deep",
        f"holds at most {MAX_SUBSCRIPTIONS} subscriptions",
        f"a subscription past a process's {MAX_SUBSCRIPTIONS}",
        f"`limit` ({page}, max {MAX_QUERY_LIMIT})",
        f"`busy_timeout={BUSY_TIMEOUT_MS}`",
        f"when the WAL passes {WAL_SIZE_LIMIT // mb} MB",
    ]


@pytest.mark.parametrize("figure", _figures())
def test_the_docs_state_the_domains_limits(figure: str) -> None:
    assert figure in " ".join(EVERYTHING.split()), figure


def test_the_readme_is_read_in_ten_minutes() -> None:
    assert len(README.encode()) <= README_BUDGET


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: {link}"
