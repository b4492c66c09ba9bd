"""The sim's VMs boot as lab nodes: a VM fakepve reports running gets a lab node made from what
the provider sent to PVE (its name, `ipconfig0`'s address and gateway, root's key from
`sshkeys`). Stopping, rebooting or deleting the VM does the same to its node."""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Seconds from `qm start` to sshd answering: a cloud image boots, cloud-init runs. Real VMs take
# 15-40 s; the sim keeps a few, so the program meets a machine that is not up yet, every time.
BOOT_SECONDS = 3.0


@dataclass(frozen=True)
class Guest:
    """What a lab node is made from: the VM's config as PVE stores it."""

    name: str
    address: str  # with its prefix length
    gateway: str
    key: str
    address6: str = ""
    gateway6: str = ""

    @property
    def slot(self) -> str:
        """The lab's namespace number: the host part of the address (as components/labnode.py)."""
        iface = ipaddress.IPv4Interface(self.address)
        return str(int(iface.ip) - int(iface.network.network_address))


def guest_of(config: dict) -> Guest | None:
    """The node a VM config describes, or None when cloud-init would give it no static address."""
    fields = dict(kv.split("=", 1) for kv in str(config.get("ipconfig0", "")).split(",") if "=" in kv)
    if "/" not in fields.get("ip", ""):
        return None
    keys = urllib.parse.unquote(str(config.get("sshkeys", ""))).strip().splitlines()
    return Guest(name=str(config.get("name", "")), address=fields["ip"], gateway=fields.get("gw", ""),
                 key=keys[0] if keys else "", address6=fields.get("ip6", "") if "/" in fields.get("ip6", "") else "",
                 gateway6=fields.get("gw6", ""))


def labctl(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab.labctl", *args], cwd=PROJECT_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"labctl {shlex.join(args[:3])} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")


def up(prefix: str, guest: Guest) -> None:
    extra = [guest.address6, guest.gateway6] if guest.address6 and guest.gateway6 else []
    labctl("node-up", prefix, guest.slot, guest.name, guest.address, guest.gateway, guest.key, *extra)


def down(prefix: str, guest: Guest) -> None:
    labctl("node-down", prefix, guest.slot, guest.name)


def reboot(prefix: str, guest: Guest) -> None:
    labctl("node-reboot", prefix, guest.slot, guest.name)


def halt(prefix: str, guest: Guest) -> None:
    labctl("node-halt", prefix, guest.slot, guest.name)


def held(prefix: str, guest: Guest) -> list[str]:
    """The addresses a node has beyond its own (the VIPs it holds): what its power-off takes down
    with it. The sim's log says so, for the tests; PVE itself cannot see them."""
    from lab.labctl import netns

    out = subprocess.run(["ip", "-n", netns(prefix, f"n{guest.slot}"), "-o", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout
    own = {guest.address.split("/")[0], guest.address6.split("/")[0]}
    return [a for a in (line.split()[3].split("/")[0] for line in out.splitlines() if "scope global" in line)
            if a not in own]


@dataclass
class Booted:
    """A VM's lab node: what it was made from, the VM start it belongs to, whether it runs."""

    guest: Guest
    started_at: float
    instance: str  # the VM's smbios1 uuid: a VM made again under the same id has a new one
    running: bool = True


class Booter:
    """Keeps the lab nodes in step with the VMs. PVE's stop, shutdown, reboot and reset tasks
    call `halt` or `restart` before they end (a stopped VM's guest is gone when the task says
    so); `step`, on every tick, boots the VMs that started (after BOOT_SECONDS, from their own
    disk when they ran before) and removes the nodes of deleted VMs."""

    def __init__(self, prefix: str, log):
        self.prefix = prefix
        self.log = log
        self.nodes: dict[tuple[str, int], Booted] = {}
        # (api, vmid) -> (started_at, when its sshd may answer) of each VM still booting
        self.booting: dict[tuple[str, int], tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _run(self, what, guest: Guest) -> None:
        try:
            what(self.prefix, guest)
        except RuntimeError as exc:
            self.log(str(exc))

    def halt(self, api: str, vmid: int) -> None:
        with self.lock:
            node = self.nodes.get((api, vmid))
            if node is not None and node.running:
                vips = held(self.prefix, node.guest)
                self.log(f"VM {vmid} ({node.guest.name}) stopped: its node halts, holding "
                         f"{' '.join(vips) if vips else 'no VIP'}")
                self._run(halt, node.guest)
                node.running = False

    def remove(self, api: str, vmid: int) -> None:
        """A destroyed VM: its node goes, disk and all, before PVE's task ends."""
        with self.lock:
            node = self.nodes.pop((api, vmid), None)
            if node is not None:
                self.log(f"VM {vmid} ({node.guest.name}) deleted: its node goes")
                self._run(down, node.guest)

    def restart(self, api: str, vmid: int, started_at: float) -> None:
        """A reboot or reset: the node reboots now, before PVE's task ends."""
        with self.lock:
            node = self.nodes.get((api, vmid))
            if node is None:
                return
            self.log(f"VM {vmid} ({node.guest.name}) restarted: its node reboots")
            self._run(reboot, node.guest)
            node.started_at, node.running = started_at, True

    def step(self, vms: list[tuple[str, int, str, float | None, dict]]) -> None:
        with self.lock:
            self._step(vms)

    def _step(self, vms: list[tuple[str, int, str, float | None, dict]]) -> None:
        now = time.monotonic()
        present = {(api, vmid) for api, vmid, *_ in vms}
        for api, vmid, status, started_at, config in vms:
            key, started_at = (api, vmid), started_at or 0.0
            node = self.nodes.get(key)
            if status != "running":
                if node is not None and node.running:  # stopped without a task (or missed one)
                    self.log(f"VM {vmid} ({node.guest.name}) is stopped: its node halts")
                    self._run(halt, node.guest)
                    node.running = False
                self.booting.pop(key, None)
                continue
            if node is not None and node.running and node.started_at == started_at:
                continue
            if self.booting.get(key, (None,))[0] != started_at:
                self.booting[key] = (started_at, now + BOOT_SECONDS)
                self.log(f"VM {vmid} ({config.get('name')}) started: booting")
            if self.booting[key][1] > now:
                continue
            del self.booting[key]
            guest = guest_of(config)
            if guest is None:
                self.log(f"VM {vmid} runs without a static ipconfig0: no lab node for it")
                continue
            instance = str(config.get("smbios1", ""))
            if node is not None and node.guest == guest and node.instance == instance:
                self._run(reboot, guest)  # boots from its own disk
            else:
                if node is not None:
                    self.log(f"VM {vmid} ({node.guest.name}) deleted: its node goes")
                    self._run(down, node.guest)
                self._run(up, guest)
            self.nodes[key] = Booted(guest, started_at, instance)
            self.log(f"VM {vmid} ({guest.name}) up at {guest.address}")
        for key in [k for k in self.booting if k not in present]:
            del self.booting[key]
        for key in [k for k in self.nodes if k not in present]:
            node = self.nodes.pop(key)
            self.log(f"VM {key[1]} ({node.guest.name}) deleted: its node goes")
            self._run(down, node.guest)
