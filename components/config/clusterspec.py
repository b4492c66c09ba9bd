"""The cluster part of the schema: nodes, their addresses, and the VIP groups they hold.

`vips` lists groups of addresses that move together (IPv4 and IPv6 of one service); the older
`vip` + `virtualRouterId` stay valid and mean one group. Errors name their key path.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from .errors import KeyError_, unique
from .fields import HostName, InterfaceName, Name, Network, Port, Spec, SshPublicKey

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class NodeSpec(Spec):
    """One node, in failover order: the first holds the VIP while it is healthy."""

    # The VM's name and host name (a host name label).
    name: HostName
    # The Proxmox VE host (its PVE node name) the VM runs on.
    host: HostName
    # The node's own IPv4 address with its prefix (cloud-init sets it); all nodes in one subnet.
    address: ipaddress.IPv4Interface
    # Needed for IPv6 VIPs (the node's own address on the segment, also set by cloud-init).
    address6: ipaddress.IPv6Interface | None = None
    # VRRP priority, highest first: on every node or on none (then 200 down to 10, in list order).
    # It sets the failover order; keepalived runs that order at 254, 253, then 64 apart.
    priority: Annotated[int, Field(ge=1, le=254)] | None = None
    # Force the initial VRRP state (single-VIP form only); derived from the order when absent.
    state: Literal["MASTER", "BACKUP"] | None = None
    # The node's address on the heartbeat network (with cluster.heartbeat, on every node).
    heartbeat_address: ipaddress.IPv4Interface | None = None


class VipGroupSpec(Spec):
    """Addresses that move together: one VRRP instance per address family, in a sync group."""

    # Names the group in keepalived.conf and in the stack outputs (vips, vipHolders).
    name: Name
    # The group's VRRP router id: unique on its L2 segment, also across stacks.
    virtual_router_id: Annotated[int, Field(ge=1, le=255)]
    # The VIPs with their prefix, IPv4 and IPv6 (one VRRP instance per family, in a sync group).
    addresses: Annotated[list[Interface], Field(min_length=1, max_length=16)]
    # The node that holds the group while healthy; default: groups spread over the nodes in order.
    preferred: HostName | None = None


class BastionSpec(Spec):
    """An SSH jump host between the machine running Pulumi and the nodes (pulumi-command's
    `connection.proxy`). It takes the same private key (sshPrivateKey) as the nodes."""

    # An IPv4/IPv6 address or a DNS name.
    host: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")]
    port: Port = 22
    user: Name = "root"
    # Pinned, as every node's is: without it any host could pose as the bastion and read what
    # passes through it. `ssh-keyscan -t ed25519 HOST` prints it; check it on its console.
    host_key: SshPublicKey


class HeartbeatSpec(Spec):
    """A network of their own for the VRRP adverts: each VM's second NIC, on a bridge (or VLAN)
    that the clients' LAN does not reach. The VIPs stay on `interface`, with their GARPs."""

    # The nodes' second interface, as the guest names it.
    interface: InterfaceName = "eth1"
    # The PVE bridge of the VMs' second NIC (platform proxmox).
    bridge: Name = "vmbr1"
    # Its VLAN tag on that bridge; absent: untagged.
    vlan: Annotated[int, Field(ge=1, le=4094)] | None = None


class ClusterSpec(Spec):
    """The nodes, their network, and the VIPs they hold."""

    # One VIP with its prefix (the original form); `vips` replaces it and virtualRouterId.
    vip: ipaddress.IPv4Interface | None = None
    # The VRRP router id of `vip`: unique on its L2 segment, also across stacks.
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] | None = None
    # VIP groups, each moving on its own (active-active: one group per node, DNS over the groups).
    vips: list[VipGroupSpec] | None = None
    # The nodes' default route, in their subnet.
    gateway: ipaddress.IPv4Address
    # The nodes' IPv6 default route, in the subnet of nodes[].address6.
    gateway6: ipaddress.IPv6Address | None = None
    # Written to the nodes' /etc/resolv.conf (the Alpine image has none); the C libraries
    # read at most three nameservers.
    dns: Annotated[list[ipaddress.IPv4Address | ipaddress.IPv6Address], Field(max_length=3)] = Field(
        default_factory=list
    )
    # The nodes' interface: VRRP speaks and the VIPs live there.
    interface: InterfaceName = "eth0"
    # true: adverts go to the other nodes' addresses (unicast_peer) instead of the multicast group.
    unicast: bool = False
    # false: nopreempt (every node starts BACKUP, a recovered node leaves the VIP where it is).
    preempt: bool = True
    # Seconds between VRRP advertisements. Sub-second needs VRRPv3, which has no PASS auth;
    # absent: failureDetection's (a lost master is replaced after 3 adverts + skew), or 1 s
    # (VRRPv2) when a vrrpPassword is set.
    advert_int: Annotated[float, Field(ge=0.01, le=255)] | None = None
    # How fast a lost node is replaced, against how long a stall a node survives without a false
    # move (components/model/detection.py maps it to the advert interval); absent: default.
    failure_detection: Literal["fast", "default", "tolerant"] | None = None
    # In failover order: the first holds the VIP (or, with vips, its share of the groups).
    nodes: Annotated[list[NodeSpec], Field(min_length=2, max_length=100)]
    # Where the program's SSH connections jump to reach the nodes; absent: a direct connection.
    bastion: BastionSpec | None = None
    # Who may reach the nodes' SSH and stats page (with the metrics); the node firewall drops
    # everyone else there. List where `pulumi` connects from (the bastion, your workstation) and
    # your monitoring. Absent: the nodes' own subnets, with a warning at every preview.
    admin_networks: Annotated[list[Network], Field(min_length=1, max_length=64)] | None = None
    # VRRP on a network of its own (each node's nodes[].heartbeatAddress): no host on the
    # clients' LAN can send where the nodes listen. Absent: adverts on `interface`.
    heartbeat: HeartbeatSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSpec:
        self._check_nodes()
        self._check_heartbeat()
        self._check_groups()
        if self.failure_detection is not None and self.advert_int is not None:
            raise KeyError_(("failureDetection",), "set failureDetection or advertInt, not both: "
                            "failureDetection chooses the advert interval")
        return self

    def _check_nodes(self) -> None:
        unique(self.nodes, "name", lambda n: n.name)
        unique(self.nodes, "address", lambda n: n.address.ip)
        explicit = [n.priority is not None for n in self.nodes]
        if any(explicit) and not all(explicit):
            i = explicit.index(False) if explicit[0] else explicit.index(True)
            raise KeyError_(("nodes", i, "priority"),
                            "set a priority on every node or on none (then they follow the list order)")
        if all(explicit):
            unique(self.nodes, "priority", lambda n: n.priority)
            for i in range(1, len(self.nodes)):
                prev, cur = self.nodes[i - 1].priority, self.nodes[i].priority
                if cur > prev:  # type: ignore[operator]
                    raise KeyError_(("nodes", i, "priority"), f"{cur} is above the previous node's {prev}; nodes "
                                    "are listed in failover order, highest priority first")
        for family, attr in ((4, "address"), (6, "address6")):
            values = [getattr(n, attr) for n in self.nodes]
            present = [v for v in values if v is not None]
            if not present:
                continue
            network = present[0].network
            for i, value in enumerate(values):
                if value is None:
                    if family == 6 and self.unicast:
                        raise KeyError_(("nodes", i, "address6"), "required on every node once one has it: "
                                        "unicast VRRP over IPv6 needs each node's address")
                    continue
                if value.network != network:
                    raise KeyError_(("nodes", i, attr), f"{value} is not in {network}, the subnet of the first "
                                    "node; VRRP needs all nodes on one L2 segment")
                if family == 4 and value.ip in (network.network_address, network.broadcast_address):
                    raise KeyError_(("nodes", i, attr), f"{value.ip} is not a host address")
            if family == 6:
                unique(self.nodes, "address6", lambda n: n.address6 and n.address6.ip)
        network = self.nodes[0].address.network
        if self.gateway not in network:
            raise KeyError_(("gateway",), f"{self.gateway} is not in the nodes' subnet {network}")
        if self.gateway in {n.address.ip for n in self.nodes}:
            raise KeyError_(("gateway",), f"{self.gateway} is also a node address")
        if self.gateway6 is not None:
            nets6 = {n.address6.network for n in self.nodes if n.address6}
            if not any(self.gateway6 in net for net in nets6):
                raise KeyError_(("gateway6",), f"{self.gateway6} is not in the nodes' IPv6 subnet "
                                f"({', '.join(map(str, nets6)) or 'no node has address6'})")
            if self.gateway6 in {n.address6.ip for n in self.nodes if n.address6}:
                raise KeyError_(("gateway6",), f"{self.gateway6} is also a node address")
        for i, node in enumerate(self.nodes):
            if node.state == "MASTER" and not self.preempt:
                raise KeyError_(("nodes", i, "state"), "MASTER cannot be combined with preempt: false; "
                                "keepalived honours nopreempt only when every node starts as BACKUP")
        states = [n.state for n in self.nodes]
        if states.count("MASTER") > 1:
            raise KeyError_(("nodes", states.index("MASTER", states.index("MASTER") + 1), "state"),
                            "only one node can be forced to MASTER")

    def _check_heartbeat(self) -> None:
        addresses = [n.heartbeat_address for n in self.nodes]
        if self.heartbeat is None:
            if any(addresses):
                i = next(i for i, a in enumerate(addresses) if a)
                raise KeyError_(("nodes", i, "heartbeatAddress"), "needs cluster.heartbeat (the network it is on)")
            return
        if self.heartbeat.interface == self.interface:
            raise KeyError_(("heartbeat", "interface"), f"{self.interface} is the clients' interface; the "
                            "heartbeat needs a NIC of its own")
        clients = self.nodes[0].address.network
        for i, address in enumerate(addresses):
            if address is None:
                raise KeyError_(("nodes", i, "heartbeatAddress"), "required on every node with cluster.heartbeat")
            if address.network != addresses[0].network:  # type: ignore[union-attr]
                raise KeyError_(("nodes", i, "heartbeatAddress"), f"{address} is not in {addresses[0].network}, "  # type: ignore[union-attr]
                                "the first node's heartbeat subnet")
            if address.network.overlaps(clients):
                raise KeyError_(("nodes", i, "heartbeatAddress"), f"{address} overlaps the clients' subnet "
                                f"{clients}; the heartbeat needs a network of its own")
        unique(self.nodes, "heartbeatAddress", lambda n: n.heartbeat_address.ip)  # type: ignore[union-attr]
        if self.unicast and any(a.version == 6 for g in self.groups() for a in g.addresses):
            raise KeyError_(("heartbeat",), "unicast IPv6 adverts need IPv6 heartbeat addresses, which are not "
                            "supported; use multicast (unicast: false) with IPv6 VIPs")

    def vrrp_interface(self) -> str:
        """Where the adverts go: the heartbeat's NIC, else the clients' interface."""
        return self.heartbeat.interface if self.heartbeat else self.interface

    def _check_groups(self) -> None:
        if self.vips is not None:
            for key in ("vip", "virtual_router_id"):
                if getattr(self, key) is not None:
                    raise KeyError_(("vip" if key == "vip" else "virtualRouterId",),
                                    "use either vip + virtualRouterId (one VIP) or vips, not both")
            if not self.vips:
                raise KeyError_(("vips",), "list at least one VIP group")
            for i, node in enumerate(self.nodes):
                if node.state is not None:
                    raise KeyError_(("nodes", i, "state"), "with vips, set vips[].preferred instead")
        elif self.vip is None or self.virtual_router_id is None:
            missing = "vip" if self.vip is None else "virtualRouterId"
            raise KeyError_((missing,), "required (or list VIP groups under vips)")
        prefix = ("vips",) if self.vips is not None else ()
        unique(self.groups(), "name", lambda g: g.name, prefix=("vips",))
        unique(self.groups(), "virtualRouterId", lambda g: g.virtual_router_id, prefix=("vips",))
        names = {n.name for n in self.nodes}
        node_ips = {n.address.ip for n in self.nodes} | {n.address6.ip for n in self.nodes if n.address6}
        seen: dict[object, str] = {}
        for i, group in enumerate(self.groups()):
            at = (*prefix, i) if prefix else ()
            if group.preferred is not None and group.preferred not in names:
                raise KeyError_((*at, "preferred"), f"no node named {group.preferred!r} "
                                f"(nodes: {', '.join(n.name for n in self.nodes)})")
            for j, address in enumerate(group.addresses):
                where = (*at, "addresses", j) if prefix else ("vip",)
                self._check_vip(where, address, node_ips)
                if address.ip in seen:
                    raise KeyError_(where, f"{address.ip} is also in {seen[address.ip]}")
                seen[address.ip] = f"group {group.name}"
            for key, gateway in (("gateway", self.gateway), ("gateway6", self.gateway6)):
                if gateway is not None and gateway in {a.ip for a in group.addresses}:
                    raise KeyError_((key,), f"{gateway} is also a VIP")

    def _check_vip(self, where: tuple, address: Interface, node_ips: set) -> None:
        if address.version == 4:
            network = self.nodes[0].address.network
            if address.ip in (network.network_address, network.broadcast_address):
                raise KeyError_(where, f"{address.ip} is not a host address of {network}")
        else:
            if any(n.address6 is None for n in self.nodes):
                raise KeyError_(where, f"{address} is IPv6: every node needs address6 on that segment")
            network = self.nodes[0].address6.network  # type: ignore[union-attr]
            if address.ip == network.network_address or address.ip.is_link_local or address.ip.is_multicast:
                raise KeyError_(where, f"{address.ip} cannot be a VIP (subnet-router anycast, link-local "
                                "or multicast)")
        if address.network != network:
            raise KeyError_(where, f"{address} is not in the nodes' subnet {network}")
        if address.ip in node_ips:
            raise KeyError_(where, f"{address.ip} is also a node address")

    def groups(self) -> list[VipGroupSpec]:
        """The VIP groups; the single-VIP form is one group named `vip`."""
        if self.vips is not None:
            return self.vips
        return [VipGroupSpec(name="vip", virtual_router_id=self.virtual_router_id,  # type: ignore[arg-type]
                             addresses=[self.vip])]  # type: ignore[list-item]

    def priorities(self) -> list[int]:
        """Each node's base priority: as configured, or spread evenly from 200 down."""
        if self.nodes[0].priority is not None:
            return [n.priority for n in self.nodes]  # type: ignore[misc]
        step = min(50, 190 // (len(self.nodes) - 1))
        return [200 - i * step for i in range(len(self.nodes))]
