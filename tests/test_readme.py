"""The README documents every tool, subcommand and environment variable, and CI runs its
test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared_context_server import errors
from shared_context_server.cli import COMMANDS
from shared_context_server.config import ENVIRONMENT, TOOLSETS
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


STORAGE_CODES = sorted(
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.BlackboardError)
    and cls.code.startswith(("STORAGE_", "SCHEMA_"))
)


@pytest.mark.parametrize("code", STORAGE_CODES)
def test_every_storage_error_code_has_a_row_in_the_readme(code: str) -> None:
    assert f"| `{code}` |" in README


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
