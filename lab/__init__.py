"""The local platform: lab nodes in network namespaces, the lab CA, and lab stacks under the real Pulumi CLI."""
