"""The MCP layer: it translates between the protocol and the blackboard, nothing more."""
