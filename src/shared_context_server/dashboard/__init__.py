"""The live, read-only browser dashboard (`shared-context-server dashboard`); imported only
when that command runs."""
