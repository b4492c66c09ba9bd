"""A lab backend server for what busybox httpd cannot speak: the PROXY protocol (v1 and v2, told
apart by their first bytes, as HAProxy's accept-proxy does) and TLS. Every HTTP request gets who
it came from: the address the PROXY header names (else the peer's), the header's version, and
the TLS server name the client asked for. `/readyz` answers `ok` (the health checks' path).

    python3 -m lab.kit.backend --listen 192.0.2.22:8443 [--proxy] [--tls bundle.pem]

Standard library only: the lab starts it with the machine's python3 inside a namespace.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import socketserver
import ssl
import struct
import sys

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxyHeaderError(Exception):
    pass


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        data += chunk
    return data


def read_proxy_header(sock: socket.socket) -> tuple[str, str]:
    """(version, client address) from the PROXY header at the start of `sock`, consuming exactly it."""
    first = _read(sock, 12)
    if first == V2_SIGNATURE:
        ver_cmd, family, length = struct.unpack("!BBH", _read(sock, 4))
        body = _read(sock, length)
        if ver_cmd >> 4 != 2:
            raise ProxyHeaderError(f"PROXY v2 with version {ver_cmd >> 4}")
        if ver_cmd & 0x0F == 0:  # LOCAL: HAProxy's own connection (a health check without client)
            return "v2", "local"
        if family >> 4 == 1:
            src = ipaddress.IPv4Address(body[0:4])
            port = struct.unpack("!H", body[8:10])[0]
            return "v2", f"{src}:{port}"
        if family >> 4 == 2:
            src6 = ipaddress.IPv6Address(body[0:16])
            port = struct.unpack("!H", body[32:34])[0]
            return "v2", f"[{src6}]:{port}"
        return "v2", "unknown"
    if not first.startswith(b"PROXY "):
        raise ProxyHeaderError(f"no PROXY header: the connection starts with {first[:12]!r}")
    line = first
    while not line.endswith(b"\r\n"):
        if len(line) > 107:
            raise ProxyHeaderError("PROXY v1 line longer than 107 bytes")
        line += _read(sock, 1)
    words = line.decode("ascii").split()
    if words[1] == "UNKNOWN":
        return "v1", "unknown"
    return "v1", f"{words[2]}:{words[4]}" if words[1] == "TCP4" else f"[{words[2]}]:{words[4]}"


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        version, client = "none", "{}:{}".format(*self.client_address[:2])
        try:
            if self.server.proxy:
                version, client = read_proxy_header(sock)
            sni = "-"
            if self.server.tls:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
                sni = getattr(sock, "lab_sni", None) or "-"
            self.serve_http(sock, version, client, sni)
        except (ProxyHeaderError, OSError, ssl.SSLError) as exc:
            print(f"{self.server.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def serve_http(self, sock: socket.socket, version: str, client: str, sni: str) -> None:
        stream = sock.makefile("rb")
        while True:
            request = stream.readline(8192)
            if not request:
                return
            keep_alive = b"HTTP/1.1" in request
            while True:  # headers
                line = stream.readline(8192)
                if not line or line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"connection:") and b"close" in line.lower():
                    keep_alive = False
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            body = (b"ok\n" if path == "/readyz" else
                    f"backend {self.server.name}\nclient {client}\nproxy {version}\nsni {sni}\n".encode())
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         b"Connection: %s\r\n\r\n%s" % (len(body), b"keep-alive" if keep_alive else b"close", body))
            if not keep_alive:
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, listen: str, proxy: bool, tls_bundle: str | None):
        host, _, port = listen.rpartition(":")
        self.name = listen
        self.proxy = proxy
        self.tls: ssl.SSLContext | None = None
        if tls_bundle:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_bundle)
            # The server name the client asked for, kept on its connection.
            self.tls.sni_callback = lambda conn, name, ctx: setattr(conn, "lab_sni", name) and None
        super().__init__((host.strip("[]"), int(port)), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m lab.kit.backend")
    parser.add_argument("--listen", required=True, help="address:port")
    parser.add_argument("--proxy", action="store_true", help="every connection opens with a PROXY header")
    parser.add_argument("--tls", help="serve TLS with this PEM bundle (certificates and key)")
    args = parser.parse_args(argv)
    with Server(args.listen, args.proxy, args.tls) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
