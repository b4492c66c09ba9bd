"""The node firewall as the config decides it (pure): who may reach which port, and whose VRRP
adverts a node accepts. templates/nftables.nft.j2 prints it.

- SSH and the stats page (its metrics too) answer `cluster.adminNetworks` only, by default the
  nodes' own subnets (with a warning: anyone there may try them).
- Each frontend's port answers its `sources`, everyone by default.
- VRRP: protocol 112 from the other nodes only, on the VRRP interface, with TTL (hop limit) 255,
  which only a sender on the link can give. keepalived's multicast IPv6 adverts come from
  link-local addresses, which the config does not know: any on-link fe80::/10 sender then.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..config.clusterspec import ClusterSpec
from ..config.haproxy import HaproxySpec

SSH_PORT = 22
VRRP_PROTOCOL = 112
# How long a new ruleset stays on probation: unless a new SSH connection confirms it within
# this, the node loads its previous rules again by itself.
CONFIRM_SECONDS = 60
# The confirmation's SSH dials. One that a firewall drops ends after 10 s (pulumi-command's
# per-dial timeout) when pulumi connects directly, or after the bastion's own TCP timeout (about
# 2 min on Linux) through a bastion: then the second dial comes after the probation, and finds
# the previous rules back, which the confirm step reports.
CONFIRM_DIAL_ATTEMPTS = 2


@dataclass(frozen=True)
class NftSet:
    """A named set of addresses in the ruleset."""

    name: str
    type: str  # ipv4_addr | ipv6_addr
    elements: tuple[str, ...]
    comment: str
    interval: bool = True  # holds networks, not only addresses


@dataclass(frozen=True)
class Opening:
    """Ports open to some sources: the match of each accept rule, and its reason."""

    comment: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Firewall:
    interface: str
    sets: tuple[NftSet, ...]
    openings: tuple[Opening, ...]
    # The other nodes' addresses (sets peers4/peers6): the only VRRP senders accepted.
    peers6: tuple[str, ...]
    # Multicast IPv6 VRRP: adverts come from the peers' link-local addresses.
    vrrp6_link_local: bool
    vrrp: int = VRRP_PROTOCOL


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(values: list[str] | None) -> list[Network] | None:
    return None if values is None else [ipaddress.ip_network(v) for v in values]


def admin_networks(cluster: ClusterSpec) -> list[Network]:
    """cluster.adminNetworks, or the subnets of the nodes' own addresses."""
    if cluster.admin_networks is not None:
        return networks(cluster.admin_networks) or []
    nets: list[Network] = [cluster.nodes[0].address.network]
    if cluster.nodes[0].address6 is not None:
        nets.append(cluster.nodes[0].address6.network)
    return nets


def admin_warning(cluster: ClusterSpec) -> str | None:
    if cluster.admin_networks is not None:
        return None
    nets = ", ".join(str(n) for n in admin_networks(cluster))
    return (f"haproxy-ha:cluster.adminNetworks is not set: SSH and the stats page stay open to {nets}, "
            "the clients' LAN; set it to where pulumi connects from and your monitoring")


def _opening(comment: str, set_name: str, ports: tuple[int, ...], networks: list[Network] | None,
             sets: list[NftSet]) -> Opening:
    """Accept rules for `ports` from `networks` (None: everyone); adds the sets they name."""
    dport = "tcp dport " + (f"{{ {', '.join(map(str, ports))} }}" if len(ports) > 1 else str(ports[0]))
    if networks is None:
        return Opening(f"{comment}: everyone", (dport,))
    rules = []
    for family, kind, match in ((4, "ipv4_addr", "ip saddr"), (6, "ipv6_addr", "ip6 saddr")):
        elements = tuple(str(n) for n in networks if n.version == family)
        if elements:
            sets.append(NftSet(f"{set_name}{family}", kind, elements, comment))
            rules.append(f"{match} @{set_name}{family} {dport}")
    return Opening(comment, tuple(rules))


def firewall(cluster: ClusterSpec, haproxy: HaproxySpec, node_name: str) -> Firewall:
    others = [n for n in cluster.nodes if n.name != node_name]
    vrrp6 = any(a.version == 6 for g in cluster.groups() for a in g.addresses)
    peers6 = tuple(str(n.address6.ip) for n in others if n.address6 is not None) if vrrp6 and cluster.unicast else ()
    sets: list[NftSet] = []
    admin_key = "cluster.adminNetworks" + ("" if cluster.admin_networks is not None
                                           else " (not set: the nodes' subnet)")
    openings = [_opening(f"SSH, the stats page and the metrics: {admin_key}", "admin",
                         (SSH_PORT, haproxy.stats.port), admin_networks(cluster), sets)]
    for i, fe in enumerate(haproxy.frontends):
        openings.append(_opening(f"frontend {fe.name} (haproxy.frontends[{i}].sources)", f"frontend{i}_",
                                 (fe.port,), networks(fe.sources), sets))
    sets.append(NftSet("peers4", "ipv4_addr", tuple(str((n.heartbeat_address or n.address).ip) for n in others),
                       "The other nodes" + (" on the heartbeat network" if cluster.heartbeat else ""), interval=False))
    if peers6:
        sets.append(NftSet("peers6", "ipv6_addr", peers6, "The other nodes", interval=False))
    return Firewall(cluster.vrrp_interface(), tuple(sets), tuple(openings), peers6, vrrp6 and not cluster.unicast)
