"""What an operator does to a blackboard file from the terminal: inspect it, watch it,
export and import sessions, back it up and prune it. Plain functions, no MCP, no printing."""
