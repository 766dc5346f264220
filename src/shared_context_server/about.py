"""What this package is called, which version is installed, and how to launch it.

The package index also holds `shared-context-server` 1.x, another project with the same
command (an HTTP server); every launch command this project prints pins the major version,
so that it can never start that one.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import Literal

PACKAGE = "shared-context-server"
# The major version this release belongs to: what every printed launch command asks for.
REQUIREMENT = f"{PACKAGE}>=2,<3"
UVX = ("uvx", "--from", REQUIREMENT, PACKAGE)
UVX_TEXT = f"uvx --from '{REQUIREMENT}' {PACKAGE}"
# The PostgreSQL driver (the `postgres` extra, pyproject.toml): what a URL's uvx adds.
POSTGRES_DRIVER = "psycopg[binary]>=3.2,<4"
UVX_POSTGRES = ("uvx", "--from", REQUIREMENT, "--with", POSTGRES_DRIVER, PACKAGE)
PIPX_INSTALL = f"pipx install '{REQUIREMENT}'"
# uvx keeps the first 2.x it fetched until its cache entry goes; pipx upgrades in place.
UPGRADE = (
    f"`uv cache clean {PACKAGE}` (uvx fetches the newest 2.x at the next start) or "
    f"`pipx upgrade {PACKAGE}`, then restart the clients"
)


@cache
def package_version() -> str:
    """The installed distribution's version, from its metadata (pyproject's `version`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# How this copy was installed, which decides the commands worth printing to its user:
# uvx (a throwaway environment in uv's cache), pipx, or any other environment (a venv,
# `uv tool`, a system Python) whose own interpreter can take more packages.
Route = Literal["uvx", "pipx", "environment"]


def uv_cache_of(path: Path) -> Path | None:
    """The uv cache directory `path` lies in (as uvx's environments do), else None."""
    # Not resolved: a venv's python is a symlink out of the cache, and the venv is what
    # vanishes. uv marks its cache root with CACHEDIR.TAG; UV_CACHE_DIR may move it.
    path = path.absolute()
    moved = os.environ.get("UV_CACHE_DIR")
    if moved and path.is_relative_to(Path(moved).absolute()):
        return Path(moved).absolute()
    for parent in path.parents:
        if parent.name.startswith("archive-v") and (parent.parent / "CACHEDIR.TAG").is_file():
            return parent.parent
    return None


def install_route(prefix: Path | None = None) -> Route:
    """Where this interpreter's environment (`sys.prefix`) lives says how it was installed."""
    prefix = Path(sys.prefix) if prefix is None else prefix
    if uv_cache_of(prefix / "marker") is not None:
        return "uvx"
    # pipx keeps one venv per app in PIPX_HOME/venvs/NAME (~/.local/pipx or
    # ~/.local/share/pipx, %USERPROFILE%\pipx on Windows).
    home = os.environ.get("PIPX_HOME")
    if prefix.parent.name == "venvs" and (
        "pipx" in prefix.parent.parent.name or (home and prefix.parent.parent == Path(home))
    ):
        return "pipx"
    return "environment"


def driver_install_hint(route: Route | None = None) -> str:
    """The command that gives this copy the PostgreSQL driver, as it was installed."""
    route = install_route() if route is None else route
    if route == "uvx":
        return f"add --with '{POSTGRES_DRIVER}' to the uvx command (`config CLIENT --db URL`)"
    if route == "pipx":
        return f"pipx inject {PACKAGE} '{POSTGRES_DRIVER}'"
    # Into this very environment, whatever made it (a venv, `uv tool`, a system Python):
    # uv-made environments have no pip, and `uv pip --python` reaches them all.
    return (
        f"{sys.executable} -m pip install '{POSTGRES_DRIVER}' (no pip there: "
        f"uv pip install --python {sys.executable} '{POSTGRES_DRIVER}')"
    )
