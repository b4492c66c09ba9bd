"""The local platform: lab nodes in network namespaces and the replay runner."""
