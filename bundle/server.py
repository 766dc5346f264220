"""The Claude Desktop bundle's entry point: serve MCP over stdio as `shared-context-server`
does, with the user's settings from the bundle's environment."""

from __future__ import annotations

import os
import re
import sys

# A setting the user left empty may reach us unsubstituted ("${user_config.database}");
# the server must not take that text for an agent id or a file name: unset it.
for name, value in list(os.environ.items()):
    if name.startswith("SHARED_CONTEXT_") and re.fullmatch(r"\$\{user_config\.\w+\}", value):
        del os.environ[name]

from shared_context_server.entry import main  # noqa: E402 (after the clean-up above)

if __name__ == "__main__":
    sys.exit(main())
