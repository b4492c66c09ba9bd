"""The validated cluster and every value derived from it.

Everything the templates print is decided here: priorities, states, unicast peers, the stats
password hash, ports, ACL names. Templates only shape text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.alpine import support_warning
from ..config.errors import PROJECT, ConfigError
from ..config.haproxy import FrontendSpec
from ..config.schema import StackSpec, load_stack
from ..config.tls import KEY as TLS_KEY
from ..config.tls import WARN_DAYS, Certificate, load_certificates
from . import detection, proxies
from .firewall import admin_warning
from .sha512crypt import derived_salt, sha512_crypt
from .vrrp import GroupOnNode, node_groups, preferred_holders


@dataclass(frozen=True)
class Secrets:
    """Secret config values. `repr` never shows them."""

    stats_password: str
    vrrp_password: str | None = None
    # Keys whose value is a stand-in (offline render without the real secret).
    placeholders: tuple[str, ...] = ()
    # haproxy-ha:tlsCertificates: name -> PEM bundle.
    tls_bundles: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"

    def validate(self) -> None:
        if len(self.stats_password) < 8:
            raise ConfigError(f"{PROJECT}:statsPassword", "must be at least 8 characters")
        if any(c in self.stats_password for c in "\r\n\0"):
            raise ConfigError(f"{PROJECT}:statsPassword", "must be one line")
        if self.vrrp_password is not None:
            if not 1 <= len(self.vrrp_password) <= 8:
                raise ConfigError(
                    f"{PROJECT}:vrrpPassword",
                    f"is {len(self.vrrp_password)} characters; VRRP PASS authentication uses at "
                    "most 8 (keepalived silently truncates longer ones)",
                )
            if not re.fullmatch(r"[!-~]+", self.vrrp_password) or any(c in self.vrrp_password for c in "\"'\\#!"):
                raise ConfigError(
                    f"{PROJECT}:vrrpPassword",
                    "use printable ASCII without spaces, quotes, backslash, `#` or `!`",
                )


# --- Derived values --------------------------------------------------------------------------


# What every node installs, on the VMs (apk) and in the lab (apt) alike. rsyslog receives
# HAProxy's logs inside its chroot; logrotate rotates them; python3 runs haproxy-watch;
# ca-certificates is the trust store of backends with tls.ca: system; nftables is the node firewall.
PACKAGES = ("haproxy", "keepalived", "nftables", "rsyslog", "logrotate", "python3", "qemu-guest-agent",
            "ca-certificates")


@dataclass(frozen=True)
class Node:
    """One node with everything derived for it."""

    index: int
    name: str
    host: str
    address: ipaddress.IPv4Interface
    address6: ipaddress.IPv6Interface | None
    priority: int  # its place in the node order (the rollout goes lowest first)
    groups: tuple[GroupOnNode, ...]  # the VRRP instances it runs, per VIP group

    @property
    def state(self) -> str:
        """Initial VRRP state of its first instance (all of one group share it)."""
        return self.groups[0].instances[0].state

    @property
    def peers(self) -> tuple[str, ...]:
        return self.groups[0].instances[0].peers


@dataclass(frozen=True)
class Cluster:
    """The validated stack plus every derived value the templates and components need."""

    stack: str
    spec: StackSpec
    secrets: Secrets
    # The bundles the frontends use, checked; name -> Certificate.
    certificates: Mapping[str, Certificate] = field(default_factory=dict)
    # Said at preview time, not fatal (a certificate that expires soon).
    warnings: tuple[str, ...] = ()
    # The CA files backends verify their servers with: name -> PEM certificates (public).
    backend_cas: Mapping[str, str] = field(default_factory=dict)

    @property
    def uses_tls(self) -> bool:
        return bool(self.certificates)

    @property
    def nodes(self) -> tuple[Node, ...]:
        c = self.spec.cluster
        prios = c.priorities()
        groups = node_groups(c)
        return tuple(
            Node(i, spec.name, spec.host, spec.address, spec.address6, prios[i], groups[spec.name])
            for i, spec in enumerate(c.nodes)
        )

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def interfaces(self) -> tuple[str, ...]:
        """The nodes' interfaces: the clients' one, and the heartbeat's NIC when there is one."""
        c = self.spec.cluster
        return (c.interface, c.heartbeat.interface) if c.heartbeat else (c.interface,)

    @property
    def vrrp_version(self) -> int:
        return 2 if self.secrets.vrrp_password else 3

    @property
    def advert_int(self) -> float:
        """Seconds between VRRP adverts: cluster.advertInt, else failureDetection's (detection.py)."""
        return detection.advert_int(self.spec.cluster, self.vrrp_version)

    @property
    def advert_int_text(self) -> str:
        return f"{self.advert_int:g}"

    @property
    def vip_holder(self) -> Node:
        """The node that holds the first VIP group when all are healthy."""
        return self.node(preferred_holders(self.spec.cluster)[self.spec.cluster.groups()[0].name])

    @property
    def holders(self) -> dict[str, str]:
        """VIP group -> the node that holds it when all are healthy."""
        return preferred_holders(self.spec.cluster)

    @property
    def vip_addresses(self) -> dict[str, list[str]]:
        """VIP group -> its addresses (without prefix length)."""
        return {g.name: [str(a.ip) for a in g.addresses] for g in self.spec.cluster.groups()}

    @property
    def has_ipv6(self) -> bool:
        return any(a.version == 6 for g in self.spec.cluster.groups() for a in g.addresses)

    def binds(self, bind: str) -> list[str]:
        """Where a frontend listens: `*:port` also on IPv6 once a VIP is IPv6 (HAProxy's `*` is
        IPv4 only), so every frontend answers on every VIP of both families."""
        if self.has_ipv6 and bind.startswith("*:"):
            return [bind, f"[::]:{bind[2:]} v6only"]
        return [bind]

    @property
    def rollout_order(self) -> tuple[Node, ...]:
        """Backups first (lowest priority first), the VIP holder last."""
        return tuple(sorted(self.nodes, key=lambda n: n.priority))

    @property
    def health_port(self) -> int:
        return self.spec.haproxy.stats.port

    @property
    def stats_password_hash(self) -> str:
        user = self.spec.haproxy.stats.user
        return sha512_crypt(self.secrets.stats_password, derived_salt(self.stack, "stats", user))

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every TCP port HAProxy must listen on once healthy, sorted."""
        return tuple(sorted({self.spec.haproxy.stats.port, *(f.port for f in self.spec.haproxy.frontends)}))

    def uses_ocsp(self, frontend: FrontendSpec) -> bool:
        """A certificate of this frontend names an OCSP responder: HAProxy 2.8+ staples its answer."""
        return bool(frontend.tls) and any(self.certificates[n].ocsp_url for n in frontend.tls.certificates)  # type: ignore[union-attr]


def referenced_certificates(spec: StackSpec) -> dict[str, str]:
    """Certificate names the frontends use -> the key path that first names each."""
    out: dict[str, str] = {}
    for i, fe in enumerate(spec.haproxy.frontends):
        for j, name in enumerate(fe.tls.certificates if fe.tls else ()):
            out.setdefault(name, f"{PROJECT}:haproxy.frontends[{i}].tls.certificates[{j}]")
    return out


def build_cluster(stack: str, config: Mapping[str, Any], secrets: Secrets, now: dt.datetime | None = None) -> Cluster:
    """Validate everything and return the derived cluster; raises ConfigError."""
    spec = load_stack(config)
    secrets.validate()
    detection.check(spec.cluster, secrets.vrrp_password)
    if secrets.vrrp_password and spec.cluster.advert_int is not None and spec.cluster.advert_int % 1:
        raise ConfigError(
            f"{PROJECT}:cluster.advertInt",
            f"{spec.cluster.advert_int:g} s needs VRRPv3, which has no PASS authentication; "
            "use whole seconds or drop vrrpPassword",
        )
    if secrets.vrrp_password and any(a.version == 6 for g in spec.cluster.groups() for a in g.addresses):
        raise ConfigError(
            f"{PROJECT}:vrrpPassword",
            "PASS authentication is VRRPv2, which has no IPv6: keepalived would run the IPv6 "
            "instances unauthenticated; drop vrrpPassword or the IPv6 VIPs",
        )
    now = now or dt.datetime.now(dt.UTC)
    certificates = load_certificates(referenced_certificates(spec), secrets.tls_bundles, now)
    warnings = tuple(
        f"{TLS_KEY}.{c.name}: expires on {c.not_after:%Y-%m-%d %H:%M} UTC, in less than {WARN_DAYS} days; renew it"
        for c in certificates.values() if c.expires_within(WARN_DAYS, now)
    )
    open_admin = admin_warning(spec.cluster)
    warnings += (open_admin,) if open_admin else ()
    if spec.platform == "proxmox":
        past_support = support_warning(spec.vm.image_url, now.date())
        warnings += (past_support,) if past_support else ()
    return Cluster(stack, spec, secrets, certificates, warnings, _backend_cas(spec, secrets, certificates, now))


def _backend_cas(spec: StackSpec, secrets: Secrets, loaded: Mapping[str, Certificate],
                 now: dt.datetime) -> dict[str, str]:
    """backends[].tls.ca: a haproxy.caBundles entry, or a haproxy-ha:tlsCertificates bundle's chain
    (a frontend's certificate already `loaded` is not parsed again)."""
    out = {}
    for name, where in proxies.backend_cas(spec.haproxy).items():
        if name in spec.haproxy.ca_bundles:
            out[name] = spec.haproxy.ca_bundles[name]
            continue
        if name not in secrets.tls_bundles:
            known = sorted({*spec.haproxy.ca_bundles, *secrets.tls_bundles})
            raise ConfigError(where, f"unknown CA {name!r}: name one in haproxy.caBundles or {TLS_KEY}, or "
                              f"`system` (known: {', '.join(known) or 'none'})")
        cert = loaded.get(name) or load_certificates({name: where}, secrets.tls_bundles, now)[name]
        if not cert.chain_pem:
            raise ConfigError(where, f"{TLS_KEY}.{name} has no chain after its leaf certificate, so no CA "
                              "to trust; add the issuing CA to the bundle, or name a haproxy.caBundles entry")
        out[name] = cert.chain_pem
    return out


def content_hash(*texts: str) -> str:
    """A short stable hash of rendered file contents (for triggers and exports)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]
