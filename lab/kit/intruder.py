"""A hostile host on a lab LAN, as any machine on a user's LAN could be: a namespace of its own on
the lab bridge (not the bastion, not a node). It scans the nodes and the VIPs, and sends VRRP
adverts it forges (`python3 -m lab.kit.intruder adverts ...` runs inside its namespace, or any
other: a node's address can be spoofed from anywhere on the link).

VRRPv3 (RFC 5798 section 5): version 3, type 1, the VRID, the priority, the address count, the
advert interval in centiseconds, a checksum over an IPv4 pseudo-header, then the addresses, which
keepalived compares with its own list (an attacker copies them from any real advert). Sent in
IPv4 packets it builds itself (IP_HDRINCL): any source address, TTL 255, as a host on the link.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from .wire import checksum

VRRP_GROUP = "224.0.0.18"
IPPROTO_VRRP = 112


def advert(source: str, destination: str, vrid: int, priority: int, addresses: list[str], interval: float,
           ttl: int = 255) -> bytes:
    """One VRRPv3 advert for IPv4, with its IP header."""
    addrs = b"".join(socket.inet_aton(a) for a in addresses)
    centis = max(1, round(interval * 100)) & 0x0FFF

    def body(checksum: int) -> bytes:
        return struct.pack("!BBBBHH", 0x31, vrid, priority, len(addresses), centis, checksum) + addrs

    pseudo = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!BBH", 0, IPPROTO_VRRP,
                                                                                     len(body(0)))
    vrrp = body(checksum(pseudo + body(0)))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(vrrp), 0, 0, ttl, IPPROTO_VRRP, 0,
                         socket.inet_aton(source), socket.inet_aton(destination))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + vrrp


def send_adverts(source: str, destinations: list[str], vrid: int, priority: int, addresses: list[str],
                 interval: float, seconds: float, ttl: int = 255) -> int:
    """Adverts to each destination every `interval` for `seconds`; returns how many went out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sent, end = 0, time.monotonic() + seconds
    packets = [(advert(source, d, vrid, priority, addresses, interval, ttl), d) for d in destinations]
    while time.monotonic() < end:
        for packet, destination in packets:
            sock.sendto(packet, (destination, 0))
            sent += 1
        time.sleep(interval)
    sock.close()
    return sent


def adverts_heard(interface: str, seconds: float) -> int:
    """VRRP packets (IPv4 protocol 112) that arrive on `interface` within `seconds`, whatever
    their destination: what a host on that link can read."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((interface, 0))
    sock.settimeout(0.1)
    heard, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        heard += len(frame) > 23 and frame[23] == IPPROTO_VRRP
    sock.close()
    return heard


def open_ports(targets: list[str], ports: list[int], timeout: float) -> list[list]:
    """(address, port) pairs that accept a TCP connection."""
    found = []
    for address in targets:
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                if sock.connect_ex((address, port)) == 0:
                    found.append([address, port])
    return found


@dataclass
class Intruder:
    """A host at `address` on the lab LAN of `lab` (lab.stack.Lab); removed on exit, also on failure."""

    lab: object
    address: str = "192.0.2.66/24"
    gateway: str = "192.0.2.1"
    role: str = "ix"

    @property
    def ns(self) -> str:
        return self.lab.ns(self.role)  # type: ignore[attr-defined]

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def __enter__(self) -> Intruder:
        from lab import labctl

        labctl.attach(self.lab.prefix, self.role, self.role, self.address, self.gateway)  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc) -> None:
        from lab import labctl

        labctl.kill_namespace_processes(self.ns)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)

    def scan(self, targets: list[str], ports: list[int]) -> set[tuple[str, int]]:
        return scan(self.ns, targets, ports)

    def adverts(self, *, vrid: int, priority: int, addresses: list[str], to: list[str], interval: float,
                seconds: float, source: str | None = None) -> subprocess.Popen:
        """Forged adverts in the background (from this host's own address unless `source`);
        wait() on the result for them to end."""
        spec = {"source": source or self.ip, "destinations": to, "vrid": vrid, "priority": priority,
                "addresses": addresses, "interval": interval, "seconds": seconds}
        return subprocess.Popen(_in(self.ns, "adverts", spec), stdout=subprocess.PIPE, text=True, cwd=_project())


def _project() -> str:
    from lab.labctl import PROJECT_DIR

    return str(PROJECT_DIR)


def _in(ns: str, command: str, spec: dict) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "lab.kit.intruder", command, json.dumps(spec)]


def heard(ns: str, seconds: float = 1.0, interface: str = "eth0") -> int:
    """VRRP adverts a host in lab namespace `ns` sees on its link within `seconds`."""
    proc = subprocess.run(_in(ns, "heard", {"interface": interface, "seconds": seconds}),
                          capture_output=True, text=True, timeout=60, check=True, cwd=_project())
    return int(proc.stdout)


def scan(ns: str, targets: list[str], ports: list[int], timeout: float = 0.3) -> set[tuple[str, int]]:
    """The (address, port) pairs that accept a TCP connection from lab namespace `ns`."""
    proc = subprocess.run(_in(ns, "scan", {"targets": targets, "ports": ports, "timeout": timeout}),
                          capture_output=True, text=True, timeout=300, check=True, cwd=_project())
    return {(a, p) for a, p in json.loads(proc.stdout)}


def main(argv: list[str]) -> None:
    command, spec = argv[0], json.loads(argv[1])
    if command == "heard":
        print(adverts_heard(spec["interface"], spec["seconds"]))
    elif command == "scan":
        print(json.dumps(open_ports(spec["targets"], spec["ports"], spec["timeout"])))
    elif command == "adverts":
        print(send_adverts(**spec))
    else:
        raise SystemExit("usage: python3 -m lab.kit.intruder scan|adverts JSON")


if __name__ == "__main__":
    main(sys.argv[1:])
