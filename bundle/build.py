"""Stage the Claude Desktop bundle (a `uv` server, manifest 0.4) from this clone.

    python bundle/build.py [STAGING]        # default: dist/bundle
    npx --yes @anthropic-ai/mcpb@2.1.2 pack dist/bundle dist/shared-context-server.mcpb

The staged folder is the project itself as uv sees it: pyproject.toml and uv.lock copied
unchanged (so the host's uv installs the versions CI tested), README and LICENSE (the
build backend reads them), the package's source, and the manifest, icon and entry point
from bundle/. Nothing here needs the package index to hold 2.0.0.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "bundle"
PROJECT_FILES = ("pyproject.toml", "uv.lock", "README.md", "LICENSE")


def stage(target: Path) -> Path:
    """Fill `target` (emptied first) with the bundle's files; raises ValueError when the
    manifest's version is not the project's."""
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    if manifest["version"] != version:
        raise ValueError(f"bundle/manifest.json says {manifest['version']}, pyproject {version}")
    if target.exists():
        shutil.rmtree(target)
    (target / "src").mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(
        ROOT / "src" / "shared_context_server",
        target / "src" / "shared_context_server",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy2(HERE / "manifest.json", target / "manifest.json")
    shutil.copy2(HERE / "icon.png", target / "icon.png")
    shutil.copy2(HERE / "server.py", target / "src" / "server.py")
    return target


if __name__ == "__main__":
    print(stage(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist" / "bundle"))
