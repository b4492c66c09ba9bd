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
    # What changes exactly when the machine is a new one (the steps' trigger). PVE gives a VM
    # made again the lowest free id, often the old one's, so the id alone would not say so.
    identity: pulumi.Input[str] | None = None
    # What the machine is asked to be (a VM's size and image): when it changes, the node's
    # `ready` gate runs again after the change, before the next node's machine is touched.
    settings: str = ""

    @property
    def instance(self) -> pulumi.Input[str]:
        return self.identity if self.identity is not None else self.resource.id
