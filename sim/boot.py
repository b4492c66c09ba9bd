"""The sim's VMs boot as lab nodes: a VM fakepve reports running gets a lab node made from what
the provider sent to PVE (its name, `ipconfig0`'s address and gateway, root's key from
`sshkeys`). Stopping, rebooting or deleting the VM does the same to its node."""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import sys
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


class Booter:
    """Keeps the lab nodes in step with the VMs: called with every VM's (api, vmid, status,
    started_at, config) on each tick, it boots, reboots and stops nodes to match."""

    def __init__(self, prefix: str, log):
        self.prefix = prefix
        self.log = log
        # (api, vmid) -> (started_at, guest) of each node that runs
        self.running: dict[tuple[str, int], tuple[float, Guest]] = {}
        # (api, vmid) -> (started_at, when its sshd may answer) of each VM still booting
        self.booting: dict[tuple[str, int], tuple[float, float]] = {}

    def step(self, vms: list[tuple[str, int, str, float | None, dict]]) -> None:
        seen = set()
        now = time.monotonic()
        for api, vmid, status, started_at, config in vms:
            key = (api, vmid)
            if status != "running":
                continue
            seen.add(key)
            started_at = started_at or 0.0
            have = self.running.get(key)
            if have and have[0] == started_at:
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
                self.running[key] = (started_at, Guest("", "0.0.0.0/32", "", ""))
                continue
            try:
                if have and have[1] == guest:
                    self.log(f"VM {vmid} ({guest.name}) restarted: rebooting its node")
                    reboot(self.prefix, guest)
                else:
                    if have and have[1].name:
                        down(self.prefix, have[1])
                    up(self.prefix, guest)
                    self.log(f"VM {vmid} ({guest.name}) up at {guest.address}")
                self.running[key] = (started_at, guest)
            except RuntimeError as exc:
                self.log(str(exc))
        for key in [k for k in self.booting if k not in seen]:
            del self.booting[key]
        for key in [k for k in self.running if k not in seen]:
            _, guest = self.running.pop(key)
            if guest.name:
                self.log(f"VM {key[1]} ({guest.name}) stopped or deleted: its node goes down")
                try:
                    down(self.prefix, guest)
                except RuntimeError as exc:
                    self.log(str(exc))
