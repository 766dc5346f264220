"""What ships beside the package: server.json for the MCP registry and the Claude Desktop
bundle's manifest, each checked against the schema its publisher ships (tests/schemas/),
and both kept in step with pyproject and the server's own settings."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from shared_context_server.about import PACKAGE
from shared_context_server.config import ENVIRONMENT

ROOT = Path(__file__).parents[1]
SCHEMAS = Path(__file__).parent / "schemas"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


SERVER = load(ROOT / "server.json")
MANIFEST = load(ROOT / "bundle" / "manifest.json")


def errors(document: Any, schema_file: str) -> list[str]:
    validator = Draft7Validator(
        load(SCHEMAS / schema_file), format_checker=Draft7Validator.FORMAT_CHECKER
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_server_json_is_valid_against_the_registry_schema_it_names() -> None:
    schema = load(SCHEMAS / "server.schema.json")
    assert SERVER["$schema"] == schema["$id"]
    assert errors(SERVER, "server.schema.json") == []


def test_the_schema_check_rejects_what_the_registry_would() -> None:
    too_long = {**SERVER, "description": "x" * 101}
    no_slash = {**SERVER, "name": "shared-context-server"}
    assert errors(too_long, "server.schema.json")
    assert errors(no_slash, "server.schema.json")


def test_server_json_offers_this_release_from_pypi_through_uvx_over_stdio() -> None:
    (package,) = SERVER["packages"]
    assert SERVER["version"] == package["version"] == VERSION
    assert package["registryType"] == "pypi"
    assert package["identifier"] == PACKAGE
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}
    assert {v["name"] for v in package["environmentVariables"]} <= set(ENVIRONMENT)


def test_the_readme_carries_the_registrys_ownership_marker_for_this_name() -> None:
    # The registry reads the PyPI description (the README) for `mcp-name: NAME`.
    marker = re.search(r"mcp-name: (\S+)", (ROOT / "README.md").read_text())
    assert marker is not None and marker[1] == SERVER["name"]


def test_the_bundle_manifest_is_valid_against_the_mcpb_schema() -> None:
    schema = load(SCHEMAS / "mcpb-manifest-v0.4.schema.json")
    assert MANIFEST["manifest_version"] == schema["properties"]["manifest_version"]["const"]
    assert errors(MANIFEST, "mcpb-manifest-v0.4.schema.json") == []
    assert errors({**MANIFEST, "server": {"type": "uv"}}, "mcpb-manifest-v0.4.schema.json")


def test_the_bundle_is_this_release_and_runs_under_uv_on_every_platform() -> None:
    assert MANIFEST["name"] == PACKAGE
    assert MANIFEST["version"] == VERSION
    assert MANIFEST["server"]["type"] == "uv"
    assert (ROOT / "bundle" / Path(MANIFEST["server"]["entry_point"]).name).is_file()
    assert set(MANIFEST["compatibility"]["platforms"]) == {"darwin", "win32", "linux"}


@pytest.mark.parametrize("setting", ["agent_id", "agent_type", "database"])
def test_every_bundle_setting_reaches_a_server_environment_variable(setting: str) -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    (variable,) = [k for k, v in env.items() if v == f"${{user_config.{setting}}}"]
    assert variable in ENVIRONMENT
    assert setting in MANIFEST["user_config"]


def test_the_bundle_icon_is_a_png_of_the_recommended_size() -> None:
    data = (ROOT / "bundle" / MANIFEST["icon"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (512, 512)


WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def test_the_release_workflow_passes_the_workflow_linter() -> None:
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or "zizmor"
    proc = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(WORKFLOW.parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_release_workflow_tests_three_platforms_and_publishes_only_by_trusted_publishing() -> (
    None
):
    text = WORKFLOW.read_text()
    assert "os: [ubuntu-latest, macos-latest, windows-latest]" in text
    assert "id-token: write" in text and "pypa/gh-action-pypi-publish" in text
    assert "password" not in text and "secrets." not in text
    assert "twine check" in text
