"""Packets on a lab wire, timestamped to the microsecond on the shared CLOCK_MONOTONIC.

`Wire` records what arrives on a lab namespace's eth0 with the kernel's receive timestamps
(SO_TIMESTAMPNS) moved onto CLOCK_MONOTONIC (a thread enters the namespace with setns, opens the
AF_PACKET socket and leaves: a socket stays in the namespace it was made in): gratuitous ARPs for
the VIP, VRRP adverts, and the answers to its probe's SYNs (SYN-ACK or RST, with the sender's
MAC, which names the node that answered). The probe, a process of its own in that namespace,
sends a TCP SYN to the VIP every millisecond from a raw socket: the kernel resolves the VIP's
MAC through its ARP cache, as any client does, and answers the SYN-ACKs with RST, so no
connection state builds up.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
# Source ports of the probe's SYNs: above Linux's ephemeral range (32768-60999), so no socket
# of the client's own (the load generator's) ever shares one.
PORTS = range(61000, 65000)

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: str, make):
    """`make()` run in lab namespace `ns` (this thread enters it and comes back)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
        try:
            return make()
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def mono_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of a few paired readings."""
    best = None
    for _ in range(50):
        a = time.monotonic_ns()
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    return best[1]  # type: ignore[index]


def link_switch(ns: str, port: str) -> LinkSwitch:
    return in_netns(ns, lambda: LinkSwitch(port))


class LinkSwitch:
    """Sets one link up or down with a single ioctl (no `ip` process: the instant is exact)."""

    def __init__(self, port: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.name = port.encode()

    def set(self, up: bool) -> int:
        """Returns the monotonic ns just before the ioctl."""
        import fcntl

        req = struct.pack("16sH22x", self.name, 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(self.sock, SIOCGIFFLAGS, req))[1]
        flags = flags | IFF_UP if up else flags & ~IFF_UP
        at = time.monotonic_ns()
        fcntl.ioctl(self.sock, SIOCSIFFLAGS, struct.pack("16sH22x", self.name, flags))
        return at

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Event:
    at: int  # CLOCK_MONOTONIC, ns
    kind: str  # garp | vrrp | synack | rst
    mac: str  # sender's MAC
    detail: int = 0  # VRRP: the advert's priority


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _syn(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


class Wire:
    """SYNs to `vip:port` every `interval` s and a capture of eth0, in lab namespace `ns`."""

    def __init__(self, ns: str, vip: str, port: int, interval: float = 0.001):
        self.vip, self.port, self.interval = vip, port, interval
        self.offset = mono_offset_ns()
        self.events: list[Event] = []
        self._stop = threading.Event()

        def sockets():
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            cap.bind(("eth0", ETH_P_ALL))
            cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            cap.settimeout(0.2)
            cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            return cap

        self.cap = in_netns(ns, sockets)
        self._vip_b = socket.inet_aton(vip)
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        # The sender is a process of its own (its own interpreter lock), at a raised priority so
        # its 1 ms cadence holds while the bench, the load and the nodes share 2 cores.
        self.sender = subprocess.Popen(
            ["ip", "netns", "exec", ns, "nice", "-n", "-10", sys.executable, "-m", "lab.kit.wire",
             vip, str(port), str(interval)], cwd=Path(__file__).resolve().parents[2])

    def _capture(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _flags, addr = self.cap.recvmsg(256, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or len(data) < 42:
                continue
            at = time.monotonic_ns()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec * 1_000_000_000 + nsec - self.offset
            event = self._parse(data, at)
            if event is not None:
                self.events.append(event)

    def _parse(self, data: bytes, at: int) -> Event | None:
        mac = data[6:12].hex(":")
        ethertype = struct.unpack("!H", data[12:14])[0]
        if ethertype == 0x0806:
            sender, target = data[28:32], data[38:42]
            if sender == self._vip_b and target == self._vip_b:
                return Event(at, "garp", mac)
            return None
        if ethertype != 0x0800:
            return None
        ihl = (data[14] & 0x0F) * 4
        proto, src = data[23], data[26:30]
        body = data[14 + ihl:]
        if proto == 112 and len(body) >= 4:  # VRRP: version/type, VRID, priority
            return Event(at, "vrrp", mac, body[2])
        if proto == 6 and src == self._vip_b and len(body) >= 14:
            sport, dport = struct.unpack("!HH", body[:4])
            flags = body[13]
            if sport != self.port or dport not in PORTS:
                return None
            if flags & 0x12 == 0x12:
                return Event(at, "synack", mac)
            if flags & 0x04:
                return Event(at, "rst", mac)
        return None

    def between(self, start: int, end: int) -> list[Event]:
        return [e for e in list(self.events) if start <= e.at <= end]

    def clear(self) -> None:
        self.events = []

    def close(self) -> None:
        self._stop.set()
        if self.sender.poll() is None:  # the sender started here, by PID
            self.sender.terminate()
        self.sender.wait()
        self._thread.join(timeout=2)
        self.cap.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def send(vip: str, port: int, interval: float) -> None:
    """A SYN to `vip:port` every `interval` s from a raw socket, until SIGTERM."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    route = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    route.connect((vip, port))
    src, dst = socket.inet_aton(route.getsockname()[0]), socket.inet_aton(vip)
    route.close()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    next_at = time.monotonic()
    while True:
        for sport in PORTS:
            try:
                raw.sendto(_syn(src, dst, sport, port), (vip, 0))
            except OSError:
                pass  # an unresolved neighbour's queue is full: the next one tries again
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


if __name__ == "__main__":
    send(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
