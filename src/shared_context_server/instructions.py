"""How an agent should work on the blackboard, in a few sentences: the server's
`instructions` in the initialize result, and `config --instructions` for a CLAUDE.md or
AGENTS.md (hosts that drop server instructions still read those files)."""

AGENT_INSTRUCTIONS = (
    "The shared-context tools are a blackboard shared with other agents on this machine. "
    "Call check_inbox at the start of a task and whenever you wait for others: it returns "
    "what is new for you across your sessions, once, with replies to you and messages "
    "addressed to you (metadata.to) first; pass wait_s to wait for news instead of "
    "sleeping. Work in a session (create_session, or a session_id you were given): post "
    'findings and hand-offs with add_message (metadata {"to": ["agent-id"]} addresses '
    "one, parent_message_id replies), and read a session with get_context. Before editing "
    "files other agents may touch, claim them (claim with a reason; release when done); "
    "acknowledge hand-offs addressed to you."
)
