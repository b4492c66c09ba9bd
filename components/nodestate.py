"""A node's live state, read in one SSH round trip, and how it differs from the desired state.
Pure: the probe script, its parser and the drift rules; nodestate_provider.py does the SSH.

What is read: the sha256 of every managed file, whether each daemon runs and runs files no
older than itself (a file changed after the daemon last (re)loaded means it runs an older
version), whether it starts at boot, the hash of sshd's managed block, and the VRRP state of
every instance with the addresses the node holds. The probe only reads: it never changes a node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SSHD_CONFIG = "/etc/ssh/sshd_config"


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


@dataclass
class Live:
    reachable: bool = True
    error: str = ""
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256 or "missing"
    mtimes: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)  # service -> start time (epoch) of what serves
    enabled: dict[str, bool] = field(default_factory=dict)
    sshd_block: str = ""
    vrrp: dict[str, str] = field(default_factory=dict)  # instance -> MASTER/BACKUP/FAULT
    addresses: list[str] = field(default_factory=list)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sshd_block_hash(block: str) -> str:
    return sha256(block.rstrip("\n") + "\n")


def probe_script(desired: Desired, state_dir: str, interface: str) -> str:
    """POSIX sh that prints one `kind name value...` line per fact; reads only."""
    lines = [
        "#!/bin/sh",
        "# haproxy-ha read: what is on this node (never changes anything)",
        "set -u",
        'tck=$(getconf CLK_TCK 2>/dev/null || echo 100)',
        "btime=$(awk '$1 == \"btime\" { print $2 }' /proc/stat)",
        # started PID: when the process started, in epoch seconds
        'started() { awk -v b="$btime" -v t="$tck" \'{ sub(/.*\\) /, ""); split($0, f, " "); '
        'printf "%.2f\\n", b + f[20] / t }\' "/proc/$1/stat"; }',
        # main PID: a process named $2 whose parent is not also $2 (pidfile first)
        'main() { p=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9); '
        'if [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ]; then echo "$p"; return; fi; '
        'for s in /proc/[0-9]*/comm; do [ "$(cat "$s" 2>/dev/null)" = "$2" ] || continue; q=${s#/proc/}; q=${q%/comm}; '
        'pp=$(awk \'$1 == "PPid:" { print $2 }\' /proc/$q/status 2>/dev/null); '
        '[ "$(cat /proc/$pp/comm 2>/dev/null)" = "$2" ] && continue; echo "$q"; return; done; }',
        # newest child of PID by start time (HAProxy's current worker, keepalived's VRRP child)
        'newest() { n=""; best=0; for s in /proc/[0-9]*/status; do '
        'c=$(awk -v p="$1" \'$1 == "PPid:" && $2 == p { split(FILENAME, a, "/"); print a[3] }\' "$s" 2>/dev/null); '
        '[ -n "$c" ] || continue; t=$(started "$c" 2>/dev/null) || continue; '
        'if awk -v a="$t" -v b="$best" \'BEGIN { exit !(a>b) }\'; then n=$c; best=$t; fi; done; echo "$n"; }',
        'enabled() { if [ -e "/etc/runlevels/default/$1" ] || [ -e "/etc/runlevels/boot/$1" ]; then echo yes; '
        'elif [ -d /run/systemd/system ] && systemctl is-enabled "$1" >/dev/null 2>&1; then echo yes; '
        'else echo no; fi; }',
    ]
    for name, (path, _) in sorted(desired.files.items()):
        lines.append(
            f'if [ -f "{path}" ]; then echo "file {name} $(sha256sum "{path}" | cut -d" " -f1) '
            f'$(stat -c %Y "{path}")"; else echo "file {name} missing 0"; fi'
        )
    for svc in desired.services:
        lines.append(
            f'p=$(main "{svc.pidfile}" "{svc.comm}"); '
            + ('[ -n "$p" ] && c=$(newest "$p") && [ -n "$c" ] && p=$c; ' if svc.worker else "")
            + f'if [ -n "$p" ]; then t=$(started "$p"); '
            f'a=$(cat "{state_dir}/applied-{svc.name}" 2>/dev/null || echo 0); '
            f'echo "run {svc.name} $(awk -v t="$t" -v a="$a" \'BEGIN {{ print (a>t ? a : t) }}\')"; '
            f'else echo "run {svc.name} none"; fi; '
            f'echo "enabled {svc.name} $(enabled {svc.name})"'
        )
    lines += [
        f"block=$(sed -n '/^# BEGIN haproxy-ha$/,/^# END haproxy-ha$/p' {SSHD_CONFIG})",
        'echo "sshd $(printf \'%s\\n\' "$block" | sha256sum | cut -d" " -f1)"',
        f'for f in {state_dir}/state-*; do [ -f "$f" ] && echo "vrrp ${{f##*/state-}} $(cat "$f")"; done',
        f"ip -o addr show dev {interface} 2>/dev/null | awk '{{ split($4, a, \"/\"); print \"addr \" a[1] }}'",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"


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
        elif kind == "sshd" and parts:
            live.sshd_block = parts[0]
        elif kind == "vrrp" and len(parts) == 2:
            live.vrrp[parts[0]] = parts[1]
        elif kind == "addr" and parts:
            live.addresses.append(parts[0])
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
        if started is None:
            out.append(f"{svc.name}: not running")
        elif any(live.mtimes.get(f, 0) > started + 1 for f in svc.files):
            out.append(f"{svc.name}: runs an older version of its files (not reloaded)")
        if not live.enabled.get(svc.name, False):
            out.append(f"{svc.name}: not enabled at boot")
    if live.sshd_block != desired.sshd_block:
        out.append("sshd_config: the hardening block changed")
    return out
