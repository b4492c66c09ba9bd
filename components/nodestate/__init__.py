"""A node's live state: the read-only probe, the drift rules, and the resource that restores it."""
