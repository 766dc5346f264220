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


@pytest.mark.parametrize("tool", sorted(tools_for(frozenset(TOOLSETS))))
def test_every_tool_has_a_row_in_the_readme(tool: str) -> None:
    assert f"| `{tool}` |" in README


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_a_row_in_the_readme(command: str) -> None:
    assert f"| `{command}` |" in README


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT))
def test_every_environment_variable_has_a_row_in_the_readme(variable: str) -> None:
    assert f"| `{variable}` |" in README


def _codes(error: type[BlackboardError]) -> set[str]:
    return {error.code}.union(*(_codes(sub) for sub in error.__subclasses__()))


@pytest.mark.parametrize("code", sorted(_codes(BlackboardError)))
def test_every_error_code_has_a_row_in_the_readme(code: str) -> None:
    assert f"| `{code}` |" in README


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_readme_shows_what_config_instructions_prints() -> None:
    blocks = re.findall(r"```text\n(.*?)\n```", README, re.S)
    assert textwrap.fill(AGENT_INSTRUCTIONS, width=88) in blocks
