"""How the engine reaches a node: SSH with a pinned host key, and the steps it runs there."""
