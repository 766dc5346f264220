"""The blackboard's domain: sessions, messages, identity and visibility. Knows nothing of MCP."""
