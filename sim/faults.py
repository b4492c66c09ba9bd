"""What the sim's control socket takes: the faults and out-of-band changes a PVE admin (or PVE
itself) makes behind Pulumi's back. One JSON request per line, one JSON answer:

    {"op": "vms"}                                         every VM: api, vmid, name, node, status, lock
    {"op": "storage_content", "storage": "local", "content": "iso,backup"}
    {"op": "bridge", "host": "r630", "bridge": "vmbr0", "present": false}
    {"op": "online", "host": "r420", "online": false}
    {"op": "add_vm", "host": "r730", "vmid": 9001, "name": "someone-elses"}
    {"op": "revoke", "privilege": "VM.Config.Memory"}      {"op": "restore_role"}
    {"op": "task_error", "name": "k3s-lb-02", "message": "...", "count": 1}   its next start task fails
    {"op": "time_scale", "value": 1.0}                    PVE seconds -> real seconds (tasks get slow)
    {"op": "latency", "seconds": 0.5, "host": "r630"}     added to every answer (host: only that one's)
    {"op": "backup", "name": "k3s-lb-03", "seconds": 30}  a vzdump holding the VM's lock
    {"op": "lock", "name": "k3s-lb-02", "lock": "backup"}  the VM's lock set (null clears it), as
                                                          a backup that runs for as long as a test needs
    {"op": "vm", "name": "k3s-lb-02", "action": "stop" | "reboot" | "delete"}
    {"op": "volumes"}                                     every stored volume: api -> storage -> volume ids
    {"op": "requests", "last": 50}                        the API requests PVE answered, newest last
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from . import pve as simpve


class FaultError(Exception):
    pass


class Faults:
    def __init__(self, pves: dict[str, simpve.SimPve], log: Callable[[str], None]):
        self.pves = pves
        self.log = log

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line)
            op = request.pop("op")
            method = getattr(self, f"op_{op}", None)
            if method is None:
                raise FaultError(f"no op {op!r}")
            result = method(**request)
            if asyncio.iscoroutine(result):
                result = await result
            answer = {"ok": True, "result": result}
            if op != "vms":
                self.log(f"fault: {op} {json.dumps(request, sort_keys=True)}")
        except (FaultError, TypeError, KeyError, ValueError) as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        writer.write((json.dumps(answer) + "\n").encode())
        await writer.drain()
        writer.close()

    # --- lookups -----------------------------------------------------------------------------

    def _for_host(self, host: str) -> simpve.SimPve:
        for pve in self.pves.values():
            if host in pve.nodes:
                return pve
        raise FaultError(f"no PVE host {host!r}")

    def _vm(self, name: str):
        for pve in self.pves.values():
            for vm in pve.vms:
                if vm.name == name:
                    return pve, vm
        raise FaultError(f"no VM named {name!r}")

    # --- ops ---------------------------------------------------------------------------------

    def op_vms(self) -> list[dict[str, Any]]:
        return [{"api": key, "vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
                 "lock": vm.lock, "memory": vm.config.get("memory"), "config": vm.config}
                for key, pve in self.pves.items() for vm in pve.vms]

    def op_volumes(self) -> dict[str, dict[str, list[str]]]:
        return {key: {name: sorted(store.get("volumes", {})) for name, store in pve.storages.items()}
                for key, pve in self.pves.items()}

    def op_requests(self, last: int = 50) -> list[str]:
        seen = [f"{key} {r[0]} {r[1]}" for key, pve in self.pves.items() for r in pve.requests[-last:]]
        return seen[-last:]

    def op_storage_content(self, storage: str, content: str) -> None:
        for pve in self.pves.values():
            pve.storages[storage]["content"] = content

    def op_bridge(self, host: str, bridge: str, present: bool) -> None:
        bridges = self._for_host(host).bridges.setdefault(host, set())
        (bridges.add if present else bridges.discard)(bridge)

    def op_online(self, host: str, online: bool) -> None:
        self._for_host(host).set_node_offline(host, offline=not online)

    def op_add_vm(self, host: str, vmid: int, name: str) -> None:
        pve = self._for_host(host)
        if pve.vm(vmid) is not None:
            raise FaultError(f"VM {vmid} exists")
        pve.add_vm(vmid, name, node=host, status="stopped", config={"memory": 2048, "cores": 2})

    def op_revoke(self, privilege: str) -> None:
        for pve in self.pves.values():
            simpve.revoke(pve, privilege)

    def op_restore_role(self) -> None:
        for pve in self.pves.values():
            simpve.restore_role(pve)

    def op_checked(self) -> dict[str, dict[str, list[str]]]:
        """Each privilege PVE checked for the token since the daemon started, and on which paths:
        those it held there (`granted`), and those it did not (`refused`)."""
        merged: dict[str, dict[str, set[str]]] = {"granted": {}, "refused": {}}
        for pve in self.pves.values():
            for priv, paths in pve.checked.items():
                for path, held in paths.items():
                    merged["granted" if held else "refused"].setdefault(priv, set()).add(path)
        return {kind: {priv: sorted(paths) for priv, paths in sorted(found.items())} for kind, found in merged.items()}

    def op_task_error(self, name: str, message: str) -> None:
        """The VM's next start task ends in error (as a QEMU that cannot start)."""
        _, vm = self._vm(name)
        vm.start_error = message

    def op_clear_task_error(self, name: str) -> None:
        _, vm = self._vm(name)
        vm.start_error = None

    def op_time_scale(self, value: float) -> None:
        for pve in self.pves.values():
            pve.time_scale = float(value)

    def op_latency(self, seconds: float, host: str | None = None) -> None:
        for pve in self.pves.values():
            if host is None:
                pve.slow_network(float(seconds))
            elif host in pve.nodes:
                pve.slow_network(float(seconds), node=host)

    async def op_backup(self, name: str, seconds: float) -> str:
        pve, vm = self._vm(name)
        return await pve.backup(vm.vmid, secs=float(seconds))

    def op_lock(self, name: str, lock: str | None) -> None:
        _, vm = self._vm(name)
        vm.lock = lock
        if lock:
            vm.config["lock"] = lock
        else:
            vm.config.pop("lock", None)

    def op_vm(self, name: str, action: str) -> None:
        """What `qm stop`, `qm reboot` or `qm destroy` on the host does, behind Pulumi's back."""
        import time

        pve, vm = self._vm(name)
        if action == "stop":
            vm.status = vm.qmpstatus = "stopped"
        elif action == "reboot":
            vm.started_at = time.time()
        elif action == "delete":
            vm.status = "stopped"
            pve.vms.remove(vm)
        else:
            raise FaultError(f"no VM action {action!r} (stop, reboot, delete)")
