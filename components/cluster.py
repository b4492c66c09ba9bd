"""HaCluster: the machines, the nodes in rolling order, and the cluster's outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi

from .config.tls import ticket_keys
from .machines import Machine
from .model.model import Node
from .node import HaNode, HaNodeArgs
from .seed import SecretSeed
from .settings import Settings


@dataclass(frozen=True)
class HaClusterArgs:
    settings: Settings


MachineFor = Callable[[Node, Sequence[pulumi.Resource]], Machine]


def _machines(name: str, settings: Settings, parent: pulumi.Resource) -> tuple[MachineFor, tuple, Callable]:
    """Where each node runs: a function giving a node's machine, changed only after the given
    resources (the previous node ready again); what must exist before HAProxy routes to its
    backends; and what to call once every machine is declared."""
    cluster = settings.cluster
    opts = pulumi.ResourceOptions(parent=parent)
    if cluster.spec.platform == "lab":
        from .labnode import LabNodes, LabNodesArgs

        lab = LabNodes(f"{name}-lab", LabNodesArgs(cluster), opts)
        # A lab node is a namespace: nothing about it changes in place, so nothing to chain.
        return (lambda node, after: lab.machines[node.name]), lab.backends, lambda: None
    from .vm import ProxmoxVms, ProxmoxVmsArgs

    assert settings.pve is not None  # load_settings resolves it on platform proxmox
    vms = ProxmoxVms(f"{name}-pve", ProxmoxVmsArgs(cluster, settings.pve), opts)
    return vms.machine, (), vms.done


class HaCluster(pulumi.ComponentResource):
    """N nodes behind one VIP. Config changes roll out backups first, the VIP holder last,
    each node's apply gated on the previous node's health check."""

    def __init__(self, name: str, args: HaClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("haproxy-ha:index:HaCluster", name, None, opts)
        cluster = args.settings.cluster
        machine_for, backends_ready, machines_done = _machines(name, args.settings, self)
        for warning in cluster.warnings:
            pulumi.log.warn(warning, resource=self)
        seed = keys = None
        if cluster.uses_tls:
            # The ticket keys' secret seed lives in the stack state; the generation rotates them.
            seed = SecretSeed(f"{name}-tls-ticket-seed", length=64, opts=pulumi.ResourceOptions(parent=self))
            generation = cluster.spec.haproxy.tls_ticket_key_generation
            keys = pulumi.Output.secret(seed.base64.apply(lambda b64: ticket_keys(b64, generation)))

        self.nodes: dict[str, HaNode] = {}
        previous: HaNode | None = None
        for node in cluster.rollout_order:
            machine = machine_for(node, (previous.ready,) if previous else ())
            previous = HaNode(
                f"{name}-{node.name}",
                HaNodeArgs(
                    cluster=cluster,
                    node=node,
                    machine=machine,
                    private_key=args.settings.ssh_private_key,
                    after=previous.applies if previous else (),
                    backends_ready=backends_ready,
                    ticket_keys=keys,
                    ticket_seed=seed,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            self.nodes[node.name] = previous
        machines_done()
        # Each node's live state, first read once the whole rollout is done (it reports the
        # cluster as it settled), node by node in rolling order: drift is restored in that order.
        rollout_done = previous.applies if previous else ()
        state = None
        for ha_node in self.nodes.values():
            state = ha_node.watch(after=(*rollout_done, *([state] if state else [])))

        spec = cluster.spec
        self.vips = cluster.vip_addresses
        self.vip = next(iter(self.vips.values()))[0]  # the first group's first address
        self.stats_url = f"http://{self.vip}:{spec.haproxy.stats.port}/"
        self.node_addresses = {n.name: str(n.address.ip) for n in cluster.nodes}
        self.config_hashes = {n: h.config_hash for n, h in sorted(self.nodes.items())}
        self.holders = cluster.holders
        # What each node reported at the last refresh: VRRP state per instance, drift.
        self.live = {n: h.state.vrrp for n, h in sorted(self.nodes.items())}
        self.drift = {n: h.state.drift for n, h in sorted(self.nodes.items())}
        # Each node's SSH host key as recorded at the first contact (known_hosts material).
        self.host_keys = {n: h.host_key.publicKey for n, h in sorted(self.nodes.items())}
        self.rollout = [n.name for n in cluster.rollout_order]
        self.register_outputs(
            {
                "vip": self.vip,
                "vips": self.vips,
                "vipHolders": self.holders,
                "statsUrl": self.stats_url,
                "nodes": self.node_addresses,
                "configHashes": self.config_hashes,
                "rolloutOrder": self.rollout,
                "hostKeys": self.host_keys,
            }
        )
