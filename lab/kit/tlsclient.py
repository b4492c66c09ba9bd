"""TLS probes run inside the lab's client namespace (stdlib only).

    python3 -m lab.kit.tlsclient serial HOST PORT --cafile CA [--servername NAME]
    python3 -m lab.kit.tlsclient handshakes HOST PORT --cafile CA --seconds S [--resume]
    python3 -m lab.kit.tlsclient resume HOST PORT --cafile CA     (reads a line between two connections)

Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time
from dataclasses import dataclass


def context(cafile: str, alpn: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:  # only to see what the server picks: request() speaks HTTP/1.1
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


@dataclass
class Done:
    session: ssl.SSLSession | None
    reused: bool
    version: str | None


def request(ctx: ssl.SSLContext, host: str, port: int, servername: str | None,
            session: ssl.SSLSession | None = None) -> Done:
    """One HTTPS request on a new connection, offering `session`. Returns the connection's own
    session (TLS 1.3 sends tickets after the handshake: reading the answer receives them)."""
    raw = socket.create_connection((host, port), timeout=5)
    # As browsers and curl do: without it, Nagle holds the request behind the handshake's last
    # segment until the server's delayed ACK (40 ms), which a resumed handshake hits every time.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw, server_hostname=servername or host, session=session) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {servername or host}\r\nConnection: close\r\n\r\n".encode())
        while tls.recv(65536):
            pass
        return Done(tls.session, bool(tls.session_reused), tls.version())


def serial(args: argparse.Namespace) -> dict:
    ctx = context(args.cafile, alpn=True)
    with socket.create_connection((args.host, args.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=args.servername or args.host) as tls:
            info = tls.getpeercert() or {}
            alpn = tls.selected_alpn_protocol()
    return {"serial": str(info.get("serialNumber", "")).lower().lstrip("0"), "alpn": alpn}


def handshakes(args: argparse.Namespace) -> dict:
    """As many handshakes as one client thread completes in `seconds`; with --resume, each one
    offers the previous connection's session."""
    ctx = context(args.cafile)
    session = request(ctx, args.host, args.port, args.servername).session if args.resume else None
    done = reused = 0
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        result = request(ctx, args.host, args.port, args.servername, session)
        done += 1
        reused += result.reused
        if args.resume:
            session = result.session
    elapsed = time.monotonic() - started
    return {"handshakes": done, "reused": reused, "seconds": round(elapsed, 3), "per_second": round(done / elapsed, 1)}


def resume(args: argparse.Namespace) -> dict:
    """Connect, keep the session, wait for a line on stdin (the test moves the VIP), resume."""
    ctx = context(args.cafile)
    first = request(ctx, args.host, args.port, args.servername)
    print(json.dumps({"event": "ready", "version": first.version}), flush=True)
    sys.stdin.readline()
    second = request(ctx, args.host, args.port, args.servername, first.session)
    return {"reused": second.reused, "version": second.version}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m lab.kit.tlsclient")
    parser.add_argument("command", choices=["serial", "handshakes", "resume"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--servername")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"serial": serial, "handshakes": handshakes, "resume": resume}[args.command](args)), flush=True)


if __name__ == "__main__":
    main()
