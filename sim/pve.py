"""The fake Proxmox VE the sim serves: fakepve, set up as a user's PVE is before their first
`pulumi up`, with the few PVE behaviours fakepve 0.5.0 lacks added here (each is named in
docs/lab.md's list of sim differences).

- Hosts r730, r630 and r420, as one PVE cluster (one API) or as standalone hosts (one API each).
- The storages of a fresh PVE install, with the `import` content type added to `local` as
  docs/proxmox.md asks; the bridge `vmbr0` on every host.
- The user `haproxy-ha@pve` and its token `pulumi` (privilege separation on), each granted the
  documented role on `/` (components/config/proxmox.py REQUIRED_PRIVILEGES).
- A certificate from the sim's own CA: the provider verifies it (SSL_CERT_FILE), no `insecure`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

from fakepve.model import PveError, TaskError
from fakepve.server import USER, FakePve, ok

from components.config.proxmox import REQUIRED_PRIVILEGES

HOSTS = ("r730", "r630", "r420")
USER_ID = "haproxy-ha@pve"
TOKEN_ID = f"{USER_ID}!pulumi"
BRIDGE = "vmbr0"
ROLE = frozenset(REQUIRED_PRIVILEGES)


@dataclass
class Api:
    """One PVE API: the hosts it serves, where it listens, and its token's secret."""

    key: str  # "cluster", or the host's name for a standalone host
    hosts: tuple[str, ...]
    port: int
    secret: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def token(self) -> str:
        return f"{TOKEN_ID}={self.secret}"


class SimPve(FakePve):
    """fakepve with what PVE does and fakepve 0.5.0 does not:

    - an API token with privilege separation holds a privilege only if both it and its user do
      (PVE intersects them; fakepve unions them);
    - `download-url` accepts Sys.AccessNetwork on /nodes/<node> in place of Sys.Audit +
      Sys.Modify on / (PVE 8.1 and later; fakepve checks the older rule only);
    - each host has network interfaces: a VM whose bridge is missing fails to start with PVE's
      words (qemu-server, at start), and GET /nodes/<node>/network lists what is there.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bridges: dict[str, set[str]] = {}
        self._download_node: str | None = None

    # --- privileges --------------------------------------------------------------------------

    def _holds(self, who: str, path: str, priv: str) -> bool:
        paths = [path]
        if path.startswith("/vms/"):
            paths.append("/vms")
        parts = path.strip("/").split("/")
        paths += ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]
        for granted, privs in (self.acl or {}).get(who, []):
            if priv in privs and (granted == "/" or any(p == granted or p.startswith(granted + "/") for p in paths)):
                return True
        return False

    def allowed(self, user, path, priv):
        if self.acl is None or user.split("!")[0] == "root@pam":
            return True
        if (self._download_node is not None and path == "/" and priv in ("Sys.Audit", "Sys.Modify")
                and self._holds_all(user, f"/nodes/{self._download_node}", "Sys.AccessNetwork")):
            return True
        return self._holds_all(user, path, priv)

    def _holds_all(self, user: str, path: str, priv: str) -> bool:
        owner = user.split("!")[0]
        if "!" in user:  # privsep token: its own ACL and its user's, both
            return self._holds(user, path, priv) and self._holds(owner, path, priv)
        return self._holds(owner, path, priv)

    async def _permissions(self, v, user):
        who = v.get("userid") or user
        if self.acl is None or who.split("!")[0] == "root@pam" or v.get("path") is None:
            return await super()._permissions(v, user)
        path = v["path"]
        privs = sorted({p for entries in self.acl.values() for _, ps in entries for p in ps
                        if self._holds_all(who, path, p)})
        return {path: dict.fromkeys(privs, 1)}

    async def _download_url(self, request):
        self._download_node = request.match_info["node"]
        try:
            return await super()._download_url(request)
        finally:
            self._download_node = None

    # --- network -----------------------------------------------------------------------------

    async def _generic(self, request):
        tail = request.match_info.get("tail", "").strip("/").split("/")
        if request.method == "GET" and len(tail) == 3 and tail[0] == "nodes" and tail[2] == "network":
            return await self._network_list(request, tail[1])
        return await super()._generic(request)

    async def _network_list(self, request, node: str):
        if node not in self.nodes:
            raise PveError(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                                "Name or service not known")
        return ok([{"iface": b, "type": "bridge", "active": 1, "autostart": 1, "families": ["inet"],
                    "method": "manual", "method6": "manual", "priority": 1}
                   for b in sorted(self.bridges.get(node, ()))])

    async def _do_start(self, vm, user, p):
        for key, value in sorted(vm.config.items()):
            if key.startswith("net") and key[3:].isdigit():
                bridge = dict(kv.split("=", 1) for kv in str(value).split(",") if "=" in kv).get("bridge")
                if bridge and bridge not in self.bridges.get(vm.node, ()):
                    async def body(bridge=bridge):
                        raise TaskError(f"bridge '{bridge}' does not exist")
                    return await self.task(vm.node, "qmstart", vm.vmid, user, body, vm=vm)
        return await super()._do_start(vm, user, p)


def make(api: Api, host: str, certfile: str, keyfile: str) -> SimPve:
    """A fresh PVE for `api`: its hosts, storages, bridges, user, token and ACL. Started by the
    daemon (sim/daemon.py) on `host:api.port`."""
    pve = SimPve(user="root@pam", password=secrets.token_urlsafe(16), host=host, port=api.port)
    pve.time_scale = 0.05  # a create or start takes a fraction of a second, as a task, not at once
    pve.nodes = {h: {"online": True} for h in api.hosts}
    pve.cluster_name = "sim" if api.key == "cluster" else api.key
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    pve.bridges = {h: {BRIDGE} for h in api.hosts}
    pve.apitokens[TOKEN_ID] = api.secret
    pve.grant(USER_ID, "/", *ROLE)
    pve.grant(TOKEN_ID, "/", *ROLE)
    return pve


def revoke(pve: SimPve, privilege: str) -> None:
    """Take one privilege out of the token's role (its user keeps it): as `pveum role modify`."""
    for _, privs in pve.acl.get(TOKEN_ID, []):
        privs.discard(privilege)


def restore_role(pve: SimPve) -> None:
    pve.acl[TOKEN_ID] = [("/", set(ROLE))]


__all__ = ["Api", "SimPve", "make", "revoke", "restore_role", "USER", "PveError"]
