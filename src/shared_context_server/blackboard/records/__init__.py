"""The opt-in records toolset's domain: shared tables for agents, in a file of their own.

User tables live in `<db stem>-records.db` beside the blackboard file, opened on separate
connections that never attach the blackboard, so no records call can name a blackboard
table: `sessions` or `main.messages` simply do not exist there.
"""
