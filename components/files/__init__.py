"""The files a node runs: rendered from the model, and judged by the real daemons."""
