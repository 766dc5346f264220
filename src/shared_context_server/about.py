"""What this package is called, which version is installed, and how to launch it.

The package index also holds `shared-context-server` 1.x, another project with the same
command (an HTTP server); every launch command this project prints pins the major version,
so that it can never start that one.
"""

from __future__ import annotations

from functools import cache

PACKAGE = "shared-context-server"
# The major version this release belongs to: what every printed launch command asks for.
REQUIREMENT = f"{PACKAGE}>=2,<3"
UVX = ("uvx", "--from", REQUIREMENT, PACKAGE)
UVX_TEXT = f"uvx --from '{REQUIREMENT}' {PACKAGE}"
# The PostgreSQL driver (the `postgres` extra, pyproject.toml): what a URL's uvx adds.
POSTGRES_DRIVER = "psycopg[binary]>=3.2,<4"
POSTGRES_EXTRA = f"{PACKAGE}[postgres]>=2,<3"
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
