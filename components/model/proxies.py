"""What haproxy.cfg's frontends and backends say, decided from the validated spec: route ACLs,
Mozilla's TLS profile, server and check options, the CA files backends trust, and which config
key each raw line came from. Pure: no Pulumi, no templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.errors import PROJECT
from ..config.haproxy import FROM_REQUEST, SYSTEM_CA, BackendSpec, FrontendSpec, HaproxySpec, ServerSpec


@dataclass(frozen=True)
class TlsProfile:
    """One of Mozilla's server-side TLS configurations (ssl-config.mozilla.org, version 5.7)."""

    ciphers: tuple[str, ...]  # TLS 1.2 (OpenSSL names)
    ciphersuites: tuple[str, ...]  # TLS 1.3
    curves: tuple[str, ...]


_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = ("X25519", "prime256v1", "secp384r1")
PROFILES = {
    # Mozilla's list without its three DHE-RSA suites: those need a dhparam file, and every client
    # the profile targets also speaks ECDHE. A subset of the profile passes its check.
    "intermediate": TlsProfile(
        ciphers=("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                 "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"),
        ciphersuites=_TLS13, curves=_CURVES,
    ),
    "modern": TlsProfile(ciphers=(), ciphersuites=_TLS13, curves=_CURVES),
}
# The global defaults for every bind and every TLS server (backends[].tls, check-ssl). Modern
# differs from intermediate only in its TLS version (its TLS 1.3 suites and curves are the same).
DEFAULT_PROFILE = PROFILES["intermediate"]


def bind_options(fe: FrontendSpec, certs_dir: str, ticket_keys: str, crt_list: bool = False) -> str:
    """Everything after a bind line's address: the PROXY protocol, then TLS (certificates, or the
    frontend's crt-list when HAProxy staples OCSP answers, and the profile)."""
    words = ["accept-proxy"] if fe.accept_proxy else []
    if not fe.tls:
        return " ".join(words)
    words.append("ssl")
    if crt_list:
        words.append(f"crt-list {certs_dir}/{fe.name}.crtlist")
    else:
        words += [f"crt {certs_dir}/{name}.pem" for name in fe.tls.certificates]
    # The profile's ciphers and curves are the global defaults (haproxy.cfg's global section);
    # its TLS version is per frontend: modern is TLS 1.3 only.
    words += [f"alpn {','.join(fe.tls.alpn)}", f"ssl-min-ver {fe.tls.effective_min_version}",
              f"tls-ticket-keys {ticket_keys}"]
    return " ".join(words)


def crt_list(fe: FrontendSpec, certs_dir: str, ocsp: Mapping[str, bool]) -> str:
    """The frontend's crt-list (HAProxy 2.8+): its certificates, OCSP stapling on for those that
    name a responder (`ocsp` maps name -> whether it does)."""
    assert fe.tls
    return "".join(f"{certs_dir}/{name}.pem{' [ocsp-update on]' if ocsp[name] else ''}\n"
                   for name in fe.tls.certificates)


# --- Routes ----------------------------------------------------------------------------------


def _names(prefix: str, patterns: list[str], fetch: str) -> list[tuple[str, str, list[str]]]:
    """ACLs on `fetch` for host patterns: one for exact names, one for `*.` wildcards (any subdomain)."""
    names = [p for p in patterns if not p.startswith("*.")]
    wild = [p[1:] for p in patterns if p.startswith("*.")]
    acls = []
    if names:
        acls.append((f"{prefix}_host", f"{fetch} -i", names))
    if wild:
        acls.append((f"{prefix}_wild", f"{fetch} -m end -i", wild))
    return acls


def route_acls(frontend: FrontendSpec) -> list[dict[str, Any]]:
    """ACL names and criteria for a frontend's routes, in match order. HAProxy's condition has no
    parentheses (AND binds tighter than OR): hosts AND (pathBeg OR pathEnd) is spelled out."""
    out = []
    for i, route in enumerate(frontend.routes):
        prefix = f"r{i}_{route.backend}"
        if route.sni:
            hosts = _names(prefix, route.sni, "req.ssl_sni")
        else:
            # host_only: the Host header without its port (HTTP/2's :authority arrives as Host).
            hosts = _names(prefix, route.hosts, "req.hdr(host),host_only")
        paths = []
        if route.path_beg:
            paths.append((f"{prefix}_beg", "path_beg -i", route.path_beg))
        if route.path_end:
            paths.append((f"{prefix}_end", "path_end -i", route.path_end))
        if hosts and paths:
            terms = [f"{h[0]} {p[0]}" for h in hosts for p in paths]
        else:
            terms = [a[0] for a in hosts or paths]
        out.append({"backend": route.backend, "acls": hosts + paths, "condition": " || ".join(terms)})
    return out


# --- Backends --------------------------------------------------------------------------------


def ca_file(name: str, ca_dir: str) -> str:
    return "@system-ca" if name == SYSTEM_CA else f"{ca_dir}/{name}.pem"


def server_options(be: BackendSpec, server: ServerSpec, ca_dir: str) -> str:
    """Everything after `server NAME ADDRESS` on a server line."""
    check = be.health_check
    words = ["check"]
    if check:
        words.append(f"inter {check.interval} fall {check.fall} rise {check.rise}")
    if server.weight is not None:
        words.append(f"weight {server.weight}")
    if server.backup:
        words.append("backup")
    version = be.proxy_version(server)
    if version:
        words.append("send-proxy" if version == "v1" else "send-proxy-v2")
    sni = be.tls.sni if be.tls else None
    if be.tls:
        words.append("ssl")
        if be.tls.verify == "required":
            words.append(f"verify required ca-file {ca_file(be.tls.ca or '', ca_dir)}")
        else:
            words.append("verify none")
        if sni == FROM_REQUEST:
            words.append("sni req.hdr(host),host_only")
        elif sni:
            words.append(f"sni str({sni})" + (f" verifyhost {sni}" if be.tls.verify == "required" else ""))
    elif check and check.tls:
        # Checks over TLS to a server whose traffic passes through: it answers, unverified.
        words.append("check-ssl verify none")
    check_sni = (check.host if check else None) or (sni if sni != FROM_REQUEST else None)
    if check_sni and (be.tls or (check and check.tls)):
        words.append(f"check-sni {check_sni}")
    return " ".join(words)


def http_check(be: BackendSpec) -> list[str]:
    """The backend's HTTP check lines (none for a connect check)."""
    check = be.health_check
    if not check or not check.path:
        return []
    send = f"http-check send meth {check.method} uri {check.path}"
    if check.host:
        send += f" ver HTTP/1.1 hdr Host {check.host}"
    expect = [f"http-check expect status {check.expect_status}"] if check.expect_status else []
    return ["option httpchk", send, *expect]


def backend_cas(spec: HaproxySpec) -> dict[str, str]:
    """CA names the backends trust (not `system`) -> the key that first names each."""
    out: dict[str, str] = {}
    for i, be in enumerate(spec.backends):
        if be.tls and be.tls.ca and be.tls.ca != SYSTEM_CA:
            out.setdefault(be.tls.ca, f"{PROJECT}:haproxy.backends[{i}].tls.ca")
    return out


# --- Raw lines and the keys they came from ---------------------------------------------------


def raw_lines(spec: HaproxySpec) -> list[tuple[str, str, str]]:
    """(section header, config key, line) of every raw line, in the order haproxy.cfg has them."""
    out = []
    for kind, proxies in (("frontends", spec.frontends), ("backends", spec.backends)):
        header = "frontend" if kind == "frontends" else "backend"
        for i, proxy in enumerate(proxies):
            for j, line in enumerate(proxy.extra):
                out.append((f"{header} {proxy.name}", f"{PROJECT}:haproxy.{kind}[{i}].extra[{j}]", line))
    for i, section in enumerate(spec.extra_sections):
        lines = section.splitlines()
        header = " ".join(lines[0].split())
        out += [(header, f"{PROJECT}:haproxy.extraSections[{i}]", line.strip()) for line in lines]
    return out


def line_keys(text: str, spec: HaproxySpec) -> dict[int, str]:
    """Line number (1-based) in the rendered haproxy.cfg -> the config key its raw line came from."""
    raw = text.splitlines()
    lines = [line.strip() for line in raw]
    # Section headers are the unindented lines.
    headers = {" ".join(line.split()): n for n, line in enumerate(raw) if line[:1].strip() and line[0] != "#"}
    out: dict[int, str] = {}
    cursor: dict[str, int] = {}
    for header, key, line in raw_lines(spec):
        start = cursor.get(header, headers.get(header, -1))
        if start < 0:
            continue
        for n in range(start, len(lines)):
            if lines[n] == line:
                out[n + 1] = key
                cursor[header] = n + 1
                break
    return out


_LINE = re.compile(r"haproxy\.cfg(?:\.new)?:(\d+)\]")


def name_rejected_keys(output: str, keys: Mapping[int, str]) -> str:
    """HAProxy's own message, led by the config keys of the raw lines it rejects (if any)."""
    named = sorted({keys[int(n)] for n in _LINE.findall(output) if int(n) in keys})
    return f"{', '.join(named)}: HAProxy rejects this line: {output}" if named else output
