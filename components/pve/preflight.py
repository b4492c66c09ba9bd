"""Before anything is declared on platform proxmox: each PVE host is there and online, and has
what the VMs need (the image storage's `import` content type, the disk storage, the bridge, free
VM ids), and the token holds every privilege of the documented role where PVE checks it.

Each failure is one error naming the key (or the host) and the reason, raised before the program
declares a resource, so nothing is made or changed: the provider would otherwise meet the same
problem halfway (an image downloaded, a VM created that cannot start). Read-only GETs, with the
token and TLS settings the provider uses; `pulumi preview` runs them too.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from ..config.errors import PROJECT, ConfigError
from ..config.proxmox import PveAccess, PveEndpoint
from ..model.model import Cluster

TIMEOUT = 15
# Where PVE checks each privilege of the role (components/config/proxmox.py), by what it guards.
STORAGE_IMAGE = ("Datastore.Allocate", "Datastore.AllocateTemplate", "Datastore.Audit")
STORAGE_DISK = ("Datastore.AllocateSpace", "Datastore.Audit")
NODE = ("Sys.AccessNetwork",)
BRIDGE = ("SDN.Use",)

Fetch = Callable[[PveEndpoint, str, str], Any]


class PveUnreachable(Exception):
    pass


class PveRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def fetch(endpoint: PveEndpoint, token: str, path: str) -> Any:
    """GET /api2/json<path> with the token: the answer's data."""
    url = endpoint.endpoint.rstrip("/") + "/api2/json" + path
    context = ssl._create_unverified_context() if endpoint.insecure else ssl.create_default_context()
    request = urllib.request.Request(url, headers={"Authorization": f"PVEAPIToken={token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as answer:
            return json.loads(answer.read())["data"]
    except urllib.error.HTTPError as exc:
        raise PveRefused(exc.code, exc.reason or "") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PveUnreachable(str(reason)) from None


def vm_ids(cluster: Cluster) -> dict[str, int]:
    base = cluster.spec.vm.vm_id_base
    return {} if base is None else {n.name: base + n.index for n in cluster.nodes}


def check(cluster: Cluster, access: PveAccess, get: Fetch | None = None) -> None:
    """Raise ConfigError (key, reason) at the first thing missing, endpoint by endpoint."""
    vm = cluster.spec.vm
    for endpoint in access.endpoints:
        token = access.tokens[endpoint.token_key]

        def api(path: str, endpoint=endpoint, token=token) -> Any:
            try:
                return (get or fetch)(endpoint, token, path)
            except PveUnreachable as exc:
                key = endpoint_key(endpoint)
                raise ConfigError(key, f"cannot reach the PVE API at {endpoint.endpoint} ({exc}); "
                                  f"nothing was changed") from None
            except PveRefused as exc:
                if exc.status == 401:
                    raise ConfigError(endpoint.token_key, f"PVE at {endpoint.endpoint} refused the token "
                                      f"(401 {exc}); nothing was changed") from None
                raise ConfigError(endpoint_key(endpoint), f"PVE at {endpoint.endpoint} answered {exc.status} "
                                  f"{exc} to GET {path}; nothing was changed") from None

        nodes = {n["node"]: n for n in api("/nodes")}
        for index, node in enumerate(cluster.nodes):
            if node.host not in endpoint.hosts:
                continue
            key = f"{PROJECT}:cluster.nodes[{index}].host"
            if node.host not in nodes:
                raise ConfigError(key, f"PVE at {endpoint.endpoint} has no host {node.host!r} "
                                  f"(its hosts: {', '.join(sorted(nodes))})")
            if nodes[node.host].get("status") != "online":
                raise ConfigError(key, f"host {node.host} is {nodes[node.host].get('status', 'unknown')} "
                                  "(PVE cannot reach it); nothing was changed")
        for host in endpoint.hosts:
            storages = {s["storage"]: s for s in api(f"/nodes/{host}/storage")}
            _storage(storages, host, vm.image_datastore, "import", "imageDatastore")
            _storage(storages, host, vm.datastore, "images", "datastore")
            bridges = [i["iface"] for i in api(f"/nodes/{host}/network?type=any_bridge")]
            for key, bridge in _bridges(cluster):
                if bridge not in bridges:
                    raise ConfigError(f"{PROJECT}:{key}", f"host {host} has no bridge {bridge!r} "
                                      f"(its bridges: {', '.join(sorted(bridges)) or 'none'})")
        ids = {vmid: name for name, vmid in vm_ids(cluster).items() if cluster.node(name).host in endpoint.hosts}
        if ids:
            for guest in api("/cluster/resources?type=vm"):
                name = ids.get(int(guest.get("vmid", 0)))
                if name is not None and not _ours(guest, name, cluster.stack):
                    raise ConfigError(f"{PROJECT}:vm.vmIdBase", f"VM id {guest['vmid']} (for {name}) is taken on "
                                      f"host {guest.get('node')} by {guest.get('name') or 'a guest'!r}, which is "
                                      "not this stack's")
        _privileges(api, endpoint, cluster, ids)


def endpoint_key(endpoint: PveEndpoint) -> str:
    return "proxmoxve:endpoint" if endpoint.token_key == "proxmoxve:apiToken" else \
        f"{PROJECT}:proxmoxHosts.{endpoint.key}.endpoint"


def _storage(storages: dict[str, Any], host: str, name: str, content: str, key: str) -> None:
    if name not in storages:
        raise ConfigError(f"{PROJECT}:vm.{key}", f"host {host} has no storage {name!r} the token can see "
                          f"(its storages: {', '.join(sorted(storages)) or 'none'})")
    allowed = [c for c in str(storages[name].get("content", "")).split(",") if c]
    if content not in allowed:
        raise ConfigError(f"{PROJECT}:vm.{key}", f"storage {name!r} on host {host} does not take content type "
                          f"{content!r} (it takes {','.join(allowed) or 'nothing'}); add it: "
                          f"pvesm set {name} --content {','.join([*allowed, content])}")


def _ours(guest: dict[str, Any], name: str, stack: str) -> bool:
    tags = set(str(guest.get("tags", "")).replace(",", ";").split(";"))
    return guest.get("name") == name and "haproxy-ha" in tags and stack.lower() in tags


def _bridges(cluster: Cluster) -> list[tuple[str, str]]:
    """(key, bridge) of each NIC the VMs get: the clients' LAN, and the heartbeat network's."""
    heartbeat = cluster.spec.cluster.heartbeat
    return [("vm.bridge", cluster.spec.vm.bridge),
            *([("cluster.heartbeat.bridge", heartbeat.bridge)] if heartbeat else [])]


def _privileges(api: Callable[[str], Any], endpoint: PveEndpoint, cluster: Cluster, ids: dict[int, str]) -> None:
    from ..config.proxmox import REQUIRED_PRIVILEGES

    vm = cluster.spec.vm
    vm_privs = tuple(p for p in REQUIRED_PRIVILEGES if p.startswith("VM."))
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (f"/storage/{vm.image_datastore}", STORAGE_IMAGE),
        (f"/storage/{vm.datastore}", STORAGE_DISK),
        *((f"/sdn/zones/localnetwork/{bridge}", BRIDGE) for _, bridge in _bridges(cluster)),
        *((f"/nodes/{host}", NODE) for host in endpoint.hosts),
        *(((f"/vms/{vmid}", vm_privs) for vmid in sorted(ids)) if ids else [("/vms", vm_privs)]),
    ]
    for path, privileges in wanted:
        held: set[str] = set()
        for privs in api(f"/access/permissions?path={urllib.parse.quote(path, safe='/')}").values():
            held.update(p for p, on in privs.items() if on)
        for privilege in privileges:
            if privilege not in held:
                raise ConfigError(endpoint.token_key, f"the token lacks {privilege} on {path} (PVE at "
                                  f"{endpoint.endpoint}); grant the role in docs/proxmox.md; nothing was changed")
