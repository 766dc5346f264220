"""shared-context-server: a shared blackboard for AI agents over MCP stdio."""
