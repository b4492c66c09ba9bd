"""Which VRRP instances each node runs: pure, decided here, printed by keepalived.conf.j2.

Every VIP group becomes one instance per address family (keepalived's maintainer recommends
one VRRPv3 instance per family), joined in a sync group so both families move together. Each
group's preferred node holds it; the others follow in node order. The single-VIP form keeps
its instance name (`haproxy_vip`).

The configured priorities give the order; keepalived runs them at the top of the range
(`effective_priorities`). A backup waits its skew time, (256 - priority) / 256 x the advert
interval, after the holder's priority-0 advert: 20.7 ms at priority 150 and 0.05 s, 0.6 ms at 253.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.clusterspec import ClusterSpec, VipGroupSpec

LEGACY_INSTANCE = "haproxy_vip"


@dataclass(frozen=True)
class Instance:
    """One VRRP instance on one node: a group's addresses of one address family."""

    name: str
    family: int
    virtual_router_id: int
    addresses: tuple[str, ...]  # with prefix length, as keepalived takes them
    priority: int
    state: str
    unicast_src: str | None
    peers: tuple[str, ...]


@dataclass(frozen=True)
class GroupOnNode:
    name: str
    instances: tuple[Instance, ...]

    @property
    def synced(self) -> bool:
        """Two families: a sync group makes them fail over together."""
        return len(self.instances) > 1


# Below the first backup, the others keep this many priority steps apart (fewer with more than
# 5 nodes): each waits its skew time after a priority-0 advert (3 intervals more on a node loss),
# and the first backup's own advert must reach them before it runs out. 64 steps are 12.5 ms at
# 0.05 s adverts (priorities 150 and 100 were 9.8 ms apart); with 16 (3.1 ms), the third node
# became master beside the second once in 30 lab trials on a busy 2-core machine.
BACKUP_STEP = 64


def effective_priorities(count: int) -> list[int]:
    """The priorities keepalived runs, in failover order: 254 (255 is for an address owner), 253
    for the first backup, then BACKUP_STEP apart."""
    step = min(BACKUP_STEP, 252 // max(count - 2, 1))
    return [254, *(253 - i * step for i in range(count - 1))]


def failover_order(cluster: ClusterSpec, index: int, group: VipGroupSpec) -> list[str]:
    """Node names in the order they take the group: the preferred node (default: groups spread
    over the nodes in order), then the others in node order."""
    names = [n.name for n in cluster.nodes]
    if cluster.vips is None:
        return names
    first = group.preferred or names[index % len(names)]
    return [first, *(n for n in names if n != first)]


def _states(cluster: ClusterSpec, order: list[str]) -> dict[str, str]:
    if cluster.vips is None:  # the single-VIP form may force one node's state
        forced = next((n.name for n in cluster.nodes if n.state == "MASTER"), None)
        master = (forced or order[0]) if cluster.preempt else None
        return {n.name: n.state or ("MASTER" if n.name == master else "BACKUP") for n in cluster.nodes}
    return {name: "MASTER" if cluster.preempt and i == 0 else "BACKUP" for i, name in enumerate(order)}


def node_groups(cluster: ClusterSpec) -> dict[str, tuple[GroupOnNode, ...]]:
    """node name -> the groups it runs, each with its instances (in config order)."""
    # The configured priorities are strictly falling in node order (clusterspec checks it).
    base = effective_priorities(len(cluster.nodes))
    # Each node's own address per family, where its adverts come from: on the heartbeat network
    # when there is one.
    own = {n.name: {4: str((n.heartbeat_address or n.address).ip), 6: str(n.address6.ip) if n.address6 else None}
           for n in cluster.nodes}
    out: dict[str, list[GroupOnNode]] = {n.name: [] for n in cluster.nodes}
    for index, group in enumerate(cluster.groups()):
        order = failover_order(cluster, index, group)
        priority = dict(zip(order, base, strict=True))
        states = _states(cluster, order)
        for node in cluster.nodes:
            instances = []
            for family in (4, 6):
                addresses = tuple(str(a) for a in group.addresses if a.version == family)
                if not addresses:
                    continue
                if cluster.vips is None:
                    name = LEGACY_INSTANCE
                else:
                    name = f"{group.name}_v{family}"
                peers = tuple(own[o][family] for o in own if o != node.name) if cluster.unicast else ()
                instances.append(Instance(
                    name=name, family=family, virtual_router_id=group.virtual_router_id, addresses=addresses,
                    priority=priority[node.name], state=states[node.name],
                    unicast_src=own[node.name][family] if cluster.unicast else None,
                    peers=tuple(p for p in peers if p),
                ))
            out[node.name].append(GroupOnNode(group.name, tuple(instances)))
    return {name: tuple(groups) for name, groups in out.items()}


def preferred_holders(cluster: ClusterSpec) -> dict[str, str]:
    """group name -> the node that holds it while every node is healthy."""
    return {g.name: failover_order(cluster, i, g)[0] for i, g in enumerate(cluster.groups())}
