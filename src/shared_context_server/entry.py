"""The console script. `hook` runs on every prompt of a Claude Code agent, so it is sent
to hook.py before the command line (argparse, anyio, the domain) is imported."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["hook"] and not {"-h", "--help"} & set(argv):
        from shared_context_server.hook import main as hook

        return hook(argv[1:])
    from shared_context_server.cli import main as cli

    return cli(argv)
