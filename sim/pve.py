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

from fakepve.lxc import format_size
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
      words (qemu-server, at start), and GET /nodes/<node>/network lists what is there;
    - a cloud-init drive's volume is `vm-<id>-cloudinit` (qemu-server names it so, and the
      provider finds the drive by that name; fakepve names it like any disk, vm-<id>-disk-<n>);
    - a disk made with `import-from` holds the imported image: the source must exist, the disk
      takes its size, and `import-from` is not kept in the config (fakepve ignored it);
    - `PUT .../resize` grows the disk (fakepve answered it from its catch-all and kept the size);
    - a path with a trailing slash is the same path (the provider deletes a VM with
      `DELETE .../qemu/<id>/`; fakepve answered that from its catch-all and kept the VM).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bridges: dict[str, set[str]] = {}
        self._download_node: str | None = None
        # Awaited inside PVE's tasks, so each ends (as PVE's does) with the guest as it says:
        # a reboot or reset once the VM runs again (the node reboots), a stop or shutdown once
        # it is stopped (the node halts), a destroy once it is gone (the node goes).
        self.on_restart = None
        self.on_stop = None
        self.on_destroy = None
        # privilege -> path -> whether the token held it there (once at least), for every check
        # PVE made on the calls the program made: the role, as measured.
        self.checked: dict[str, dict[str, bool]] = {}

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        hook = {"qmreboot": self.on_restart, "qmreset": self.on_restart,
                "qmstop": self.on_stop, "qmshutdown": self.on_stop, "qmdestroy": self.on_destroy}.get(ttype)
        if hook is not None and vm is not None:
            inner = body

            async def body():
                note = await inner()
                await hook(vm)
                return note
        return await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)

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
        if self._download_node is not None and path == "/" and priv in ("Sys.Audit", "Sys.Modify"):
            node = f"/nodes/{self._download_node}"
            if self._note_check(user, node, "Sys.AccessNetwork"):
                return True
        return self._note_check(user, path, priv)

    def _note_check(self, user: str, path: str, priv: str) -> bool:
        held = self._holds_all(user, path, priv)
        paths = self.checked.setdefault(priv, {})
        paths[_kind(path)] = paths.get(_kind(path), False) or held
        return held

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

    # --- disks ---------------------------------------------------------------------------------

    def _qm_new_drive(self, vmid, key, value, default):
        volume, _, options = str(value).partition(",")
        props = dict(kv.split("=", 1) for kv in options.split(",") if "=" in kv)
        source = props.pop("import-from", None)
        if source is not None:
            sid, _, name = source.partition(":")
            found = self.storages.get(sid, {}).get("volumes", {}).get(name)
            if found is None:
                raise PveError(400, "Parameter verification failed.",
                               {key: f"volume '{source}' does not exist"})
            value = ",".join([volume, *(f"{k}={v}" for k, v in props.items())])
        made, volids = super()._qm_new_drive(vmid, key, value, default)
        if volume.endswith(":cloudinit") and volids:
            store = self.storages[volids[0].partition(":")[0]]
            old = volids[0].partition(":")[2]
            store["volumes"][f"vm-{vmid}-cloudinit"] = store["volumes"].pop(old)
            named = f"{volids[0].partition(':')[0]}:vm-{vmid}-cloudinit"
            return made.replace(volids[0], named), [named]
        if source is not None and volids:
            size = int(found.get("size") or 0)
            store = self.storages[volids[0].partition(":")[0]]
            store["volumes"][volids[0].partition(":")[2]]["size"] = size
            made = ",".join(f"size={format_size(size)}" if part.startswith("size=") else part
                            for part in made.split(","))
        return made, volids

    async def _resize(self, request, node: str, vmid: str):
        """PUT /nodes/<node>/qemu/<id>/resize: the disk grows to `size` (or by `+size`); as PVE, a
        smaller size is refused, and it needs VM.Config.Disk."""
        from fakepve.lxc import SIZE_UNITS
        from fakepve.server import params

        vm = self.find(node, vmid)
        self.require(request[USER], f"/vms/{vm.vmid}", "VM.Config.Disk")
        p = await params(request)
        disk, want = p.get("disk", ""), str(p.get("size", ""))
        if disk not in vm.config:
            raise PveError(400, "Parameter verification failed.", {"disk": f"no disk '{disk}'"})
        parts = str(vm.config[disk]).split(",")
        sid, _, name = parts[0].partition(":")
        volume = self.storages[sid]["volumes"][name]

        def size_of(text: str) -> int:
            unit = text[-1] if text[-1] in SIZE_UNITS else ""
            return int(float(text[:-1] if unit else text) * (SIZE_UNITS[unit] if unit else 1))

        now = int(volume.get("size") or 0)
        new = now + size_of(want[1:]) if want.startswith("+") else size_of(want)
        if new < now:
            raise PveError(500, "shrinking disks is not supported")

        async def body():
            volume["size"] = new
            vm.config[disk] = ",".join([p for p in parts if not p.startswith("size=")] + [f"size={format_size(new)}"])
        return ok(await self.task(node, "resize", vm.vmid, request[USER], body, vm=vm))

    # --- network -----------------------------------------------------------------------------

    async def _generic(self, request):
        path = request.rel_url.path
        if len(path) > 1 and path.endswith("/"):
            # PVE's router ignores the trailing slash: answer as the path without it would be.
            clone = request.clone(rel_url=request.rel_url.with_path(path.rstrip("/")).with_query(request.rel_url.query))
            match = await request.app.router.resolve(clone)
            if "tail" not in match:
                clone._match_info = match  # what aiohttp's own dispatch sets (aiohttp 3.14)
                clone._read_bytes = request._read_bytes  # the body the middleware already read
                match.add_app(request.app)
                return await match.handler(clone)
        tail = request.match_info.get("tail", "").strip("/").split("/")
        if request.method == "GET" and len(tail) == 3 and tail[0] == "nodes" and tail[2] == "network":
            return await self._network_list(request, tail[1])
        if request.method == "PUT" and len(tail) == 5 and tail[2] == "qemu" and tail[4] == "resize":
            return await self._resize(request, tail[1], tail[3])
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


def _kind(path: str) -> str:
    """A checked path with its VM id left out (`/vms/<id>`), so the paths read as a role's ACL."""
    parts = path.split("/")
    return "/vms/<id>" if len(parts) > 2 and parts[1] == "vms" else path


def revoke(pve: SimPve, privilege: str) -> None:
    """Take one privilege out of the token's role (its user keeps it): as `pveum role modify`."""
    for _, privs in pve.acl.get(TOKEN_ID, []):
        privs.discard(privilege)


def restore_role(pve: SimPve) -> None:
    pve.acl[TOKEN_ID] = [("/", set(ROLE))]


__all__ = ["Api", "SimPve", "make", "revoke", "restore_role", "USER", "PveError"]
