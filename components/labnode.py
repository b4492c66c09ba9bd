"""Lab machines (platform: lab): network namespaces on this host instead of Proxmox VMs.

Declared as pulumi-command `local.Command`s that call `lab/labctl.py`, run by the engine like
every other step. The engine stays in this machine's own network namespace; SSH reaches each node
through the stack's bastion (cluster.bastion), which the lab runs in its client namespace behind
one forward on loopback, so nothing here touches this machine's interfaces.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

import pulumi

from .config.clusterspec import ClusterSpec
from .machines import Machine
from .model.model import Cluster
from .remote import commands

PROJECT_DIR = str(Path(__file__).resolve().parent.parent)


def lab_prefix(stack: str) -> str:
    """Namespace names of this stack's lab: short, and distinct per stack."""
    return "hha-" + "".join(c for c in stack.lower() if c.isalnum())[:12]


def lab_nic_args(spec, index: int, v6: bool) -> list[str]:
    """node-up's optional arguments: IPv6 address and gateway, then the heartbeat address
    (only what the stack has, so a stack without them keeps its command)."""
    node = spec.nodes[index]
    six = [str(node.address6), str(spec.gateway6)] if v6 and node.address6 else []
    if node.heartbeat_address is None:
        return six
    return [*(six or ["", ""]), str(node.heartbeat_address)]


def labctl(*args: str) -> str:
    return "python3 -m lab.labctl " + " ".join(shlex.quote(a) for a in args)


@dataclass(frozen=True)
class LabPort:
    """A port of a lab backend server, speaking what the config says its server speaks."""

    port: int
    proxy: bool = False  # a PROXY protocol header opens every connection (sendProxy)
    tls: bool = False  # TLS: re-encrypted traffic, checks over TLS, or TLS passed through by SNI

    @property
    def arg(self) -> str:
        kinds = [k for k, on in (("tls", self.tls), ("proxy", self.proxy)) if on]
        return ":".join([str(self.port), *kinds])


def lab_backends(cluster: Cluster) -> dict[str, list[LabPort]]:
    """Backend hosts inside the lab subnet and their ports: the lab runs a server for each
    (busybox httpd for plain HTTP, lab/kit/backend.py for PROXY and TLS)."""
    haproxy = cluster.spec.haproxy
    network = cluster.spec.cluster.nodes[0].address.network
    passthrough = {name for fe in haproxy.frontends if fe.inspects_sni
                   for name in (fe.default_backend, *(r.backend for r in fe.routes))}
    found: dict[str, dict[int, LabPort]] = {}
    for backend in haproxy.backends:
        for server in backend.servers:
            host, _, port = server.address.rpartition(":")
            try:
                if ipaddress.IPv4Address(host) not in network:
                    continue
            except ipaddress.AddressValueError:
                continue
            wanted = LabPort(int(port), proxy=backend.proxy_version(server) is not None,
                             tls=backend.speaks_tls or backend.name in passthrough)
            seen = found.setdefault(host, {}).setdefault(wanted.port, wanted)
            if seen != wanted:
                raise ValueError(f"lab: {server.address} is used by backends that speak differently "
                                 f"({seen.arg} and {wanted.arg}); give each its own port")
    return {h: [found[h][p] for p in sorted(found[h])] for h in sorted(found, key=ipaddress.IPv4Address)}


def lab_server_bundle(cluster: Cluster) -> str:
    """The certificate the lab's TLS backend servers present: the bundle a backend's tls.ca names
    (so HAProxy's verification holds), else the stack's first certificate."""
    bundles = cluster.secrets.tls_bundles
    for be in cluster.spec.haproxy.backends:
        if be.tls and be.tls.ca in bundles:
            return bundles[be.tls.ca]
    return next(iter(c.pem for c in cluster.certificates.values()), "")


def host_slot(cluster: Cluster, ip: str) -> str:
    network = cluster.spec.cluster.nodes[0].address.network
    return str(int(ipaddress.IPv4Address(ip)) - int(network.network_address))


def web_up_args(cluster: Cluster, host: str, ports: list[LabPort]) -> list[str]:
    """`labctl web-up`'s arguments for one backend host (namespaces are named after the host part
    of the address: stable when others come or go); its TLS bundle goes on stdin when a port
    speaks TLS."""
    spec = cluster.spec.cluster
    return ["web-up", lab_prefix(cluster.stack), host_slot(cluster, host),
            f"{host}/{spec.nodes[0].address.network.prefixlen}", str(spec.gateway), ",".join(p.arg for p in ports)]


def lan_gateways(spec: ClusterSpec) -> tuple[str, str]:
    """The client namespace's addresses on the lab LAN (the gateways, with their prefix): IPv6
    too when the nodes have it."""
    plen = spec.nodes[0].address.network.prefixlen
    v6 = spec.gateway6 is not None and spec.nodes[0].address6 is not None
    return (f"{spec.gateway}/{plen}",
            f"{spec.gateway6}/{spec.nodes[0].address6.network.prefixlen}" if v6 else "")  # type: ignore[union-attr]


@dataclass(frozen=True)
class LabNodesArgs:
    cluster: Cluster


class LabNodes(pulumi.ComponentResource):
    """The lab bridge, one namespace node per cluster node, and the backend web servers."""

    machines: dict[str, Machine]
    backends: tuple[pulumi.Resource, ...]

    def __init__(self, name: str, args: LabNodesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("haproxy-ha:index:LabNodes", name, None, opts)
        cluster = args.cluster
        spec = cluster.spec.cluster
        prefix = lab_prefix(cluster.stack)
        gateway = str(spec.gateway)
        v6 = bool(lan_gateways(spec)[1])

        # The LAN (bridge, client namespace, bastion) is there before the engine runs, as a
        # user's network is: lab/bastion.py. These are the machines on it.
        def command(step: str, create: str, delete: str, stdin: pulumi.Input[str] | None = None):
            return commands.on_this_machine(f"{name}-{step}", create=create, delete=delete, dir=PROJECT_DIR,
                                            stdin=stdin, opts=pulumi.ResourceOptions(parent=self))

        backends = []
        bundle = lab_server_bundle(cluster)
        for host, ports in lab_backends(cluster).items():
            backends.append(command(
                f"web-{host}",
                labctl(*web_up_args(cluster, host, ports)),
                labctl("web-down", prefix, host_slot(cluster, host)),
                stdin=pulumi.Output.secret(bundle) if any(p.tls for p in ports) else None,
            ))
        self.backends = tuple(backends)
        self.machines = {}
        for index, node in enumerate(cluster.nodes):
            resource = command(
                f"node-{node.name}",
                labctl("node-up", prefix, host_slot(cluster, str(node.address.ip)), node.name,
                       str(node.address), gateway, cluster.spec.ssh_public_key or "",
                       *lab_nic_args(spec, index, v6)),
                labctl("node-down", prefix, host_slot(cluster, str(node.address.ip)), node.name),
            )
            self.machines[node.name] = Machine(str(node.address.ip), 22, resource, dial_error_limit=30)
        self.register_outputs({"prefix": prefix})
