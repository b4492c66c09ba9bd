"""A node's live state, read in one SSH round trip, and how it differs from the desired state.
Pure: the probe's parser and the drift rules. The probe itself is rendered with the apply
scripts' shell library (templates/scripts/probe.sh.j2); provider.py runs it over SSH.

What is read: the sha256 of every managed file, whether each daemon runs and runs files no
older than itself (a file changed after the daemon last (re)loaded means it runs an older
version), whether it runs under its supervisor, whether it starts at boot or its supervisor gave
up on it, the hash of sshd's managed block, whether the firewall's rules are loaded as last
applied (and at boot), and the VRRP state of every instance with the addresses the node holds.
The probe only reads: it never changes a node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceWant:
    name: str
    pidfile: str
    comm: str
    files: tuple[str, ...]  # managed file names it runs
    worker: bool = False  # its configuration lives in its newest child (HAProxy's workers, keepalived's VRRP child)


@dataclass(frozen=True)
class Desired:
    files: dict[str, tuple[str, str]]  # name -> (path on the node, sha256)
    services: tuple[ServiceWant, ...]
    sshd_block: str  # sha256 of the `# BEGIN haproxy-ha` block bootstrap writes
    firewall: bool = False  # the node firewall is managed (nftables.nft)


@dataclass
class Live:
    reachable: bool = True
    error: str = ""
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256 or "missing"
    mtimes: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)  # service -> start time (epoch) of what serves
    enabled: dict[str, bool] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)  # services OpenRC marks failed (their supervisor gave up)
    unsupervised: set[str] = field(default_factory=set)  # running, but not under their supervisor
    sshd_block: str = ""
    vrrp: dict[str, str] = field(default_factory=dict)  # instance -> MASTER/BACKUP/FAULT
    addresses: list[str] = field(default_factory=list)
    # The firewall's table as loaded now and as last loaded by us (hashes of `nft -s list
    # table`; "none": not there), and whether it loads at boot.
    firewall_now: str = "none"
    firewall_loaded: str = "none"
    firewall_at_boot: bool = False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sshd_block_hash(block: str) -> str:
    return sha256(block.rstrip("\n") + "\n")


def parse_probe(output: str) -> Live:
    live = Live()
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        parts = rest.split()
        if kind == "file" and len(parts) == 3:
            live.files[parts[0]] = parts[1]
            live.mtimes[parts[0]] = float(parts[2])
        elif kind == "run" and len(parts) == 2 and parts[1] != "none":
            live.running[parts[0]] = float(parts[1])
        elif kind == "enabled" and len(parts) == 2:
            live.enabled[parts[0]] = parts[1] == "yes"
        elif kind == "failed" and len(parts) == 1:
            live.failed.add(parts[0])
        elif kind == "unsupervised" and len(parts) == 1:
            live.unsupervised.add(parts[0])
        elif kind == "sshd" and parts:
            live.sshd_block = parts[0]
        elif kind == "vrrp" and len(parts) == 2:
            live.vrrp[parts[0]] = parts[1]
        elif kind == "addr" and parts:
            live.addresses.append(parts[0])
        elif kind == "firewall" and len(parts) == 3:
            live.firewall_now, live.firewall_loaded = parts[0], parts[1]
            live.firewall_at_boot = parts[2] == "yes"
    return live


def drift(desired: Desired, live: Live) -> list[str]:
    """What differs from the desired state, one item a line, never a secret."""
    if not live.reachable:
        return [f"node unreachable: {live.error}"]
    out = []
    for name, (_, want) in sorted(desired.files.items()):
        have = live.files.get(name, "missing")
        if have == "missing":
            out.append(f"{name}: missing on the node")
        elif have != want:
            out.append(f"{name}: edited on the node")
    for svc in desired.services:
        started = live.running.get(svc.name)
        if started is None and svc.name in live.failed:
            out.append(f"{svc.name}: not running: it kept crashing and its supervisor gave up (rc-status: failed)")
        elif started is None:
            out.append(f"{svc.name}: not running")
        elif svc.name in live.unsupervised:
            out.append(f"{svc.name}: runs outside its supervisor (started by hand or by an older haproxy-ha): "
                       "a crash would not be restarted")
        elif any(live.mtimes.get(f, 0) > started + 1 for f in svc.files):
            out.append(f"{svc.name}: runs an older version of its files (not reloaded)")
        if not live.enabled.get(svc.name, False):
            out.append(f"{svc.name}: not enabled at boot")
    if desired.firewall:
        if live.firewall_now == "none":
            out.append("firewall: not loaded (the node accepts everything)")
        elif live.firewall_now != live.firewall_loaded:
            out.append("firewall: its rules were changed on the node")
        if not live.firewall_at_boot:
            out.append("firewall: not loaded at boot")
    if live.sshd_block != desired.sshd_block:
        out.append("sshd_config: the hardening block changed")
    return out
