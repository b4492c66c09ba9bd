"""The seam between the cluster and where its nodes run (Proxmox VMs or lab namespaces)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Machine:
    """A node's host: the SSH address and the resource whose replacement means a fresh machine."""

    address: str
    port: int
    resource: pulumi.CustomResource
    # SSH dial attempts: a fresh VM needs time to boot before sshd answers.
    dial_error_limit: int
