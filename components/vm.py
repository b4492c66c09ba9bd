"""Proxmox side: the Alpine cloud image on each PVE host and one VM per node."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi_proxmoxve import download

from .config.proxmox import DEFAULT, PveAccess
from .machines import Machine
from .model.model import Cluster, Node, content_hash


@dataclass(frozen=True)
class ProxmoxVmsArgs:
    cluster: Cluster
    pve: PveAccess


def image_file_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def image_volume(cluster: Cluster) -> str:
    """The image's volume id on each host (`<storage>:import/<file>`), as PVE names the file the
    download makes. The VMs name it, rather than take the download's id: the provider drops the
    download from the state on any failed read (a host offline during a refresh), and a download
    to be made again must not make every VM on that host look replaced."""
    vm = cluster.spec.vm
    return f"{vm.image_datastore}:import/{image_file_name(vm.image_url)}"


def vm_args(cluster: Cluster, index: int) -> dict[str, Any]:
    """The VmLegacy arguments of one node: pure, so tests can read them without Pulumi."""
    spec, vm = cluster.spec, cluster.spec.vm
    node, node_spec = cluster.nodes[index], cluster.spec.cluster.nodes[index]
    heartbeat = spec.cluster.heartbeat
    return dict(
        node_name=node.host,
        name=node.name,
        vm_id=(vm.vm_id_base + index) if vm.vm_id_base is not None else None,
        description=f"haproxy-ha node {node.name} (stack {cluster.stack}); managed by Pulumi",
        # PVE stores tags sorted and lower-case; anything else shows a diff on every preview.
        tags=sorted({"haproxy-ha", cluster.stack.lower()}),
        on_boot=True,
        started=True,
        stop_on_destroy=True,
        operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
        # The virtio-serial channel for qemu-guest-agent (our install step adds the agent). The
        # provider would otherwise wait up to 15 min for the agent's IP report after every
        # create and refresh; our addresses are static, so it never needs that report.
        agent=proxmoxve.VmLegacyAgentArgs(
            enabled=True, type="virtio", wait_for_ip=proxmoxve.VmLegacyAgentWaitForIpArgs(disabled=True)
        ),
        cpu=proxmoxve.VmLegacyCpuArgs(cores=vm.cores, type="x86-64-v2-AES"),
        memory=proxmoxve.VmLegacyMemoryArgs(dedicated=vm.memory_mi_b),
        disks=[
            proxmoxve.VmLegacyDiskArgs(
                interface="virtio0",
                datastore_id=vm.datastore,
                import_from=image_volume(cluster),
                size=vm.disk_gi_b,
                discard="on",
                iothread=True,
            )
        ],
        network_devices=[proxmoxve.VmLegacyNetworkDeviceArgs(bridge=vm.bridge, model="virtio"),
                         # The heartbeat network's NIC (the guest's second interface).
                         *([proxmoxve.VmLegacyNetworkDeviceArgs(bridge=heartbeat.bridge, vlan_id=heartbeat.vlan,
                                                                model="virtio")] if heartbeat else [])],
        # The Alpine cloud image logs to the serial console.
        serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
        initialization=proxmoxve.VmLegacyInitializationArgs(
            datastore_id=vm.datastore,
            ip_configs=[
                proxmoxve.VmLegacyInitializationIpConfigArgs(
                    ipv4=proxmoxve.VmLegacyInitializationIpConfigIpv4Args(
                        address=str(node.address), gateway=str(spec.cluster.gateway)
                    ),
                    ipv6=proxmoxve.VmLegacyInitializationIpConfigIpv6Args(
                        address=str(node.address6),
                        gateway=str(spec.cluster.gateway6) if spec.cluster.gateway6 else None,
                    ) if node.address6 else None,
                ),
                *([proxmoxve.VmLegacyInitializationIpConfigArgs(
                    ipv4=proxmoxve.VmLegacyInitializationIpConfigIpv4Args(address=str(node_spec.heartbeat_address)),
                )] if heartbeat else []),
            ],
            dns=proxmoxve.VmLegacyInitializationDnsArgs(servers=[str(s) for s in spec.cluster.dns]),
            user_account=proxmoxve.VmLegacyInitializationUserAccountArgs(
                username="root", keys=[(spec.ssh_public_key or "").strip()]
            ),
        ),
    )


def _mac(device: Any) -> str:
    """A network device's MAC address, from the provider's output (an object or, under mocks, a dict)."""
    found = getattr(device, "mac_address", None)
    if found is None and isinstance(device, dict):
        found = device.get("mac_address", device.get("macAddress"))
    return str(found or "")


class ProxmoxVms(pulumi.ComponentResource):
    """The image, downloaded once per PVE host, and one VM per node on its host."""

    def __init__(self, name: str, args: ProxmoxVmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("haproxy-ha:index:ProxmoxVms", name, None, opts)
        cluster, vm = args.cluster, args.cluster.spec.vm
        # One provider per distinct API: a PVE cluster serves all its hosts, a standalone host
        # only itself. The single-endpoint provider keeps its name, so its resources keep URNs.
        providers: dict[str, proxmoxve.Provider] = {}
        for endpoint in args.pve.endpoints:
            provider = proxmoxve.Provider(
                f"{name}-provider" if endpoint.key == DEFAULT else f"{name}-provider-{endpoint.key}",
                endpoint=endpoint.endpoint,
                insecure=endpoint.insecure,
                api_token=pulumi.Output.secret(args.pve.tokens[endpoint.token_key]),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for host in endpoint.hosts:
                providers[host] = provider

        def child(host: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=providers[host])

        images: dict[str, download.File] = {}
        for host in sorted({n.host for n in cluster.nodes}):
            images[host] = download.File(
                f"{name}-image-{host}",
                node_name=host,
                content_type="import",
                datastore_id=vm.image_datastore,
                url=vm.image_url,
                file_name=image_file_name(vm.image_url),
                checksum=vm.image_checksum,
                checksum_algorithm=vm.image_checksum_algorithm,
                overwrite=False,
                # The file already there is this image (its name is the release's), so take it
                # over: it is there when the provider dropped the download from the state after
                # a failed read (bpg 0.111.1 `downloadFileResource.Read` removes it on any error
                # but a failed login), or when another stack on the host downloaded it too.
                # Without this, PVE's "refusing to override existing file" stops the next `up`.
                overwrite_unmanaged=True,
                opts=child(host),
            )
        self.images = images
        self._child = child
        self._cluster = cluster
        self._name = name
        self.vms: dict[str, proxmoxve.VmLegacy] = {}
        # What a VM is asked to be (its size, disk and image): the `ready` gate's trigger.
        self._settings = content_hash(json.dumps(vm.model_dump(mode="json", by_alias=True), sort_keys=True))

    def machine(self, node: Node, after: Sequence[pulumi.Resource]) -> Machine:
        """The node's VM, changed only after `after` (the previous node, in rolling order, ready
        again): a new size reboots one VM at a time, a new image replaces one at a time."""
        cluster, name = self._cluster, self._name
        resource = proxmoxve.VmLegacy(
            f"{name}-{node.name}",
            **vm_args(cluster, node.index),
            opts=pulumi.ResourceOptions.merge(
                self._child(node.host),
                pulumi.ResourceOptions(
                    depends_on=[self.images[node.host], *after],
                    # A new image is a new machine (the provider would only record the new
                    # source of a disk that exists); the new VM takes the old one's address,
                    # so the old one goes first.
                    replace_on_changes=["disks[0].importFrom"],
                    delete_before_replace=True,
                    # PVE fills in the MAC addresses after creation: not ours to diff. The
                    # disk's `speed` limits we never set: the provider's schema defaults them
                    # to a block of zeros, while its read reports no block for a disk PVE
                    # stores without limits (bpg 0.111.1, vm/disk schema.go and disk.go), so
                    # every preview would otherwise propose to add it.
                    ignore_changes=["macAddresses", "networkDevices[0].macAddress", "networkDevices[1].macAddress",
                                    "disks[0].speed"],
                ),
            ),
        )
        self.vms[node.name] = resource
        # A VM made again (deleted behind Pulumi's back, or replaced) may get its old id back
        # from PVE; its MAC address, chosen by PVE at creation, is new every time.
        # (`mac_addresses` is the guest agent's report; the device's own MAC is in its config.)
        identity = pulumi.Output.all(resource.id, resource.network_devices).apply(
            lambda a: f"{a[0]}/{','.join(_mac(d) for d in a[1] or [])}")
        return Machine(str(node.address.ip), 22, resource, dial_error_limit=100, identity=identity,
                       settings=self._settings)

    def done(self) -> None:
        self.register_outputs({"vmIds": {n: v.vm_id for n, v in self.vms.items()}})
