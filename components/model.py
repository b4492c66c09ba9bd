"""The typed, validated cluster spec and every value derived from it.

Everything the templates print is decided here: priorities, states, unicast peers, the stats
password hash, ports, ACL names. Templates only shape text.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .sha512crypt import derived_salt, sha512_crypt

PROJECT = "haproxy-ha"

# --- Plain value types -----------------------------------------------------------------------

# Names end up in config lines and shell words: letters, digits and `_ . -` only, nothing that
# could close a quote, start a comment or a command (spaces, quotes, newlines, `;`, `$`, `#`).
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_HOST_RE = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
_IFACE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
_PATH_RE = r"^[A-Za-z0-9._~/%+-]{1,200}$"
_SSH_KEY_RE = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n\r]*)?$"
_URL_RE = r"^https?://[A-Za-z0-9._~:/%+-]+\.(qcow2|img|raw)$"
_SHA512_RE = r"^[0-9a-f]{128}$"

Name = Annotated[str, StringConstraints(pattern=_NAME_RE)]
# Node names are also host names (RFC 1123 label) and VM names.
HostName = Annotated[str, StringConstraints(pattern=_HOST_RE)]
InterfaceName = Annotated[str, StringConstraints(pattern=_IFACE_RE)]
# A path prefix or suffix as HAProxy matches it: no spaces, quotes or control characters.
PathPart = Annotated[str, StringConstraints(pattern=_PATH_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _endpoint(value: str) -> str:
    """`host:port` with an IPv4 address, `[IPv6]` or a DNS name; port 1..65535."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match:
        raise ValueError(f"{value!r} is not host:port (an IPv4 address, [IPv6] or a DNS name)")
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    if host.startswith("["):
        ipaddress.IPv6Address(host[1:-1])
    elif re.fullmatch(r"[\d.]+", host):
        ipaddress.IPv4Address(host)
    elif not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", p) for p in host.split(".")):
        raise ValueError(f"{host!r} is not a valid DNS name")
    return value


def _bind(value: str) -> str:
    """`*:port`, `IPv4:port` or `[IPv6]:port`."""
    if value.startswith("*:"):
        _endpoint("0.0.0.0" + value[1:])
    else:
        _endpoint(value)
        if not re.match(r"[\d\[]", value):
            raise ValueError(f"{value!r}: bind to `*`, an IPv4 address or [IPv6], not a name")
    return value


Endpoint = Annotated[str, AfterValidator(_endpoint)]
Bind = Annotated[str, AfterValidator(_bind)]


class Spec(BaseModel):
    """Base of every config object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


# --- Cluster ---------------------------------------------------------------------------------


class NodeSpec(Spec):
    name: HostName
    host: HostName
    address: ipaddress.IPv4Interface
    priority: Annotated[int, Field(ge=1, le=254)] | None = None
    # Force the initial VRRP state; derived from the order when absent.
    state: Literal["MASTER", "BACKUP"] | None = None


class ClusterSpec(Spec):
    vip: ipaddress.IPv4Interface
    virtual_router_id: Annotated[int, Field(ge=1, le=255)]
    gateway: ipaddress.IPv4Address
    # Written to the nodes' /etc/resolv.conf (the Alpine image has none); the C libraries
    # read at most three nameservers.
    dns: Annotated[list[ipaddress.IPv4Address], Field(max_length=3)] = Field(default_factory=list)
    interface: InterfaceName = "eth0"
    unicast: bool = False
    preempt: bool = True
    # Seconds between VRRP advertisements. Sub-second needs VRRPv3, which has no PASS auth;
    # absent: 0.1 s (VRRPv3: a lost master is replaced after 3 adverts + skew, ~0.35 s), or
    # 1 s (VRRPv2) when a vrrpPassword is set.
    advert_int: Annotated[float, Field(ge=0.01, le=255)] | None = None
    nodes: Annotated[list[NodeSpec], Field(min_length=2, max_length=100)]

    @model_validator(mode="after")
    def _nodes_consistent(self) -> ClusterSpec:
        _unique(self.nodes, "name", lambda n: n.name)
        _unique(self.nodes, "address", lambda n: n.address.ip)
        explicit = [n.priority is not None for n in self.nodes]
        if any(explicit) and not all(explicit):
            i = explicit.index(False) if explicit[0] else explicit.index(True)
            raise KeyError_(
                ("nodes", i, "priority"),
                "set a priority on every node or on none (then they follow the list order)",
            )
        if all(explicit):
            _unique(self.nodes, "priority", lambda n: n.priority)
            for i in range(1, len(self.nodes)):
                prev, cur = self.nodes[i - 1].priority, self.nodes[i].priority
                if cur > prev:  # type: ignore[operator]
                    raise KeyError_(
                        ("nodes", i, "priority"),
                        f"{cur} is above the previous node's {prev}; nodes are listed in "
                        "failover order, highest priority first",
                    )
        network = self.nodes[0].address.network
        for i, node in enumerate(self.nodes):
            if node.address.network != network:
                raise KeyError_(
                    ("nodes", i, "address"),
                    f"{node.address} is not in {network}, the subnet of the first node; "
                    "VRRP needs all nodes on one L2 segment",
                )
            if node.address.ip in (network.network_address, network.broadcast_address):
                raise KeyError_(("nodes", i, "address"), f"{node.address.ip} is not a host address")
        if self.vip.network != network:
            raise KeyError_(("vip",), f"{self.vip} is not in the nodes' subnet {network}")
        if self.vip.ip in {n.address.ip for n in self.nodes}:
            raise KeyError_(("vip",), f"{self.vip.ip} is also a node address")
        if self.vip.ip in (network.network_address, network.broadcast_address):
            raise KeyError_(("vip",), f"{self.vip.ip} is not a host address of {network}")
        if self.gateway not in network:
            raise KeyError_(("gateway",), f"{self.gateway} is not in the nodes' subnet {network}")
        if self.gateway == self.vip.ip or self.gateway in {n.address.ip for n in self.nodes}:
            raise KeyError_(("gateway",), f"{self.gateway} is also the VIP or a node address")
        for i, node in enumerate(self.nodes):
            if node.state == "MASTER" and not self.preempt:
                raise KeyError_(
                    ("nodes", i, "state"),
                    "MASTER cannot be combined with preempt: false; keepalived honours "
                    "nopreempt only when every node starts as BACKUP",
                )
        if sum(n.state == "MASTER" for n in self.nodes) > 1:
            i = [n.state for n in self.nodes].index("MASTER", 1 + [n.state for n in self.nodes].index("MASTER"))
            raise KeyError_(("nodes", i, "state"), "only one node can be forced to MASTER")
        return self

    def priorities(self) -> list[int]:
        """Each node's base priority: as configured, or spread evenly from 200 down."""
        if self.nodes[0].priority is not None:
            return [n.priority for n in self.nodes]  # type: ignore[misc]
        step = min(50, 190 // (len(self.nodes) - 1))
        return [200 - i * step for i in range(len(self.nodes))]


# --- VMs -------------------------------------------------------------------------------------

# Alpine 3.21 "nocloud" cloud image (BIOS, cloud-init). Checksum as published in Alpine's
# `.sha512` sidecar for this exact file.
ALPINE_IMAGE_URL = (
    "https://dl-cdn.alpinelinux.org/alpine/v3.21/releases/cloud/"
    "nocloud_alpine-3.21.7-x86_64-bios-cloudinit-r0.qcow2"
)
ALPINE_REPOSITORIES = (
    "https://dl-cdn.alpinelinux.org/alpine/v3.21/main",
    "https://dl-cdn.alpinelinux.org/alpine/v3.21/community",
)
ALPINE_IMAGE_SHA512 = (
    "5b22a46e9aa6bbacf585c055e87362c8be1993e53c121bdaf74203ac3490c70b"
    "dbbf714df4276eef36184ea8c11fd7cd3b28c9ccc74f6a9a82c430d441fa2f95"
)


class VmSpec(Spec):
    cores: Annotated[int, Field(ge=1, le=64)] = 1
    memory_mi_b: Annotated[int, Field(ge=128, le=262144, alias="memoryMiB")] = 512
    disk_gi_b: Annotated[int, Field(ge=1, le=4096, alias="diskGiB")] = 4
    bridge: Name = "vmbr0"
    datastore: Name = "local-lvm"
    # Where the downloaded image is kept on each PVE host (needs the `import` content type).
    image_datastore: Name = "local"
    image_url: Annotated[str, StringConstraints(pattern=_URL_RE)] = ALPINE_IMAGE_URL
    image_checksum: Annotated[str, StringConstraints(pattern=_SHA512_RE)] = ALPINE_IMAGE_SHA512
    vm_id_base: Annotated[int, Field(ge=100, le=999_999_000)] | None = None

    @model_validator(mode="after")
    def _image_pinned(self) -> VmSpec:
        if self.image_url != ALPINE_IMAGE_URL and self.image_checksum == ALPINE_IMAGE_SHA512:
            raise KeyError_(("imageChecksum",), "a custom imageUrl needs its own sha512 imageChecksum")
        return self


_HTTPS_RE = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$"


class ProxmoxHostSpec(Spec):
    """A standalone PVE host's own API (its token is the secret proxmoxApiTokens.<host>)."""

    endpoint: Annotated[str, StringConstraints(pattern=_HTTPS_RE)]
    insecure: bool = False


# --- HAProxy ---------------------------------------------------------------------------------


class StatsSpec(Spec):
    port: Port = 8404
    user: Name = "admin"


class RouteSpec(Spec):
    backend: Name
    path_beg: list[PathPart] = Field(default_factory=list)
    path_end: list[PathPart] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_condition(self) -> RouteSpec:
        if not self.path_beg and not self.path_end:
            raise KeyError_((), "a route needs pathBeg or pathEnd")
        return self


class FrontendSpec(Spec):
    name: Name
    bind: Bind
    mode: Literal["http", "tcp"] = "http"
    default_backend: Name
    routes: list[RouteSpec] = Field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])


class ServerSpec(Spec):
    name: Name
    address: Endpoint
    weight: Annotated[int, Field(ge=0, le=256)] | None = None
    backup: bool = False


class BackendSpec(Spec):
    name: Name
    mode: Literal["http", "tcp"] = "http"
    balance: Literal["roundrobin", "leastconn", "source", "first", "static-rr"] = "roundrobin"
    # HTTP health check path (http mode); absent: a TCP connect check.
    health_check: PathPart | None = None
    servers: Annotated[list[ServerSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _servers(self) -> BackendSpec:
        _unique(self.servers, "name", lambda s: s.name, prefix=("servers",))
        if self.health_check and self.mode != "http":
            raise KeyError_(("healthCheck",), "an HTTP health check needs mode: http")
        return self


class HaproxySpec(Spec):
    stats: StatsSpec = StatsSpec()
    maxconn: Annotated[int, Field(ge=100, le=1_000_000)] = 4000
    frontends: Annotated[list[FrontendSpec], Field(min_length=1)]
    backends: Annotated[list[BackendSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _references(self) -> HaproxySpec:
        _unique(self.frontends, "name", lambda f: f.name, prefix=("frontends",))
        _unique(self.backends, "name", lambda b: b.name, prefix=("backends",))
        if "stats" in {f.name for f in self.frontends}:
            i = [f.name for f in self.frontends].index("stats")
            raise KeyError_(("frontends", i, "name"), "`stats` is reserved for the stats page")
        backends = {b.name: b for b in self.backends}
        ports: dict[int, str] = {self.stats.port: "stats.port"}
        for i, fe in enumerate(self.frontends):
            where = f"frontends[{i}].bind"
            if fe.port in ports:
                raise KeyError_(
                    ("frontends", i, "bind"), f"port {fe.port} is already used by {ports[fe.port]}"
                )
            ports[fe.port] = where
            if fe.default_backend not in backends:
                raise KeyError_(
                    ("frontends", i, "defaultBackend"),
                    f"unknown backend {fe.default_backend!r} (known: {', '.join(sorted(backends))})",
                )
            if backends[fe.default_backend].mode != fe.mode:
                raise KeyError_(
                    ("frontends", i, "defaultBackend"),
                    f"backend {fe.default_backend!r} is mode {backends[fe.default_backend].mode}, "
                    f"the frontend is mode {fe.mode}",
                )
            if fe.routes and fe.mode != "http":
                raise KeyError_(("frontends", i, "routes"), "routes match HTTP paths; they need mode: http")
            for j, route in enumerate(fe.routes):
                if route.backend not in backends:
                    raise KeyError_(
                        ("frontends", i, "routes", j, "backend"),
                        f"unknown backend {route.backend!r} (known: {', '.join(sorted(backends))})",
                    )
                if backends[route.backend].mode != "http":
                    raise KeyError_(
                        ("frontends", i, "routes", j, "backend"),
                        f"backend {route.backend!r} is mode tcp; routes need an http backend",
                    )
        return self


# --- The whole stack -------------------------------------------------------------------------

SshPublicKey = Annotated[str, StringConstraints(pattern=_SSH_KEY_RE, max_length=16384)]


class StackSpec(Spec):
    """The `haproxy-ha:*` keys of one stack (secrets excluded)."""

    platform: Literal["proxmox", "lab"] = "proxmox"
    ssh_public_key: SshPublicKey | None = None
    cluster: ClusterSpec
    vm: VmSpec = VmSpec()
    haproxy: HaproxySpec
    # Standalone PVE hosts, each with its own endpoint; other hosts use proxmoxve:endpoint.
    proxmox_hosts: dict[HostName, ProxmoxHostSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _platform(self) -> StackSpec:
        if self.platform == "proxmox" and self.ssh_public_key is None:
            raise KeyError_(("sshPublicKey",), "required on platform proxmox (cloud-init installs it)")
        used = {n.host for n in self.cluster.nodes}
        for host in sorted(self.proxmox_hosts):
            if host not in used:
                raise KeyError_(("proxmoxHosts", host), f"no node runs on host {host!r} "
                                f"(hosts: {', '.join(sorted(used))})")
        return self


SECRET_KEYS = ("statsPassword", "vrrpPassword", "sshPrivateKey", "proxmoxApiTokens")


@dataclass(frozen=True)
class Secrets:
    """Secret config values. `repr` never shows them."""

    stats_password: str
    vrrp_password: str | None = None
    # Keys whose value is a stand-in (offline render without the real secret).
    placeholders: tuple[str, ...] = ()

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


# --- Errors ----------------------------------------------------------------------------------


class ConfigError(ValueError):
    """One clear message: the config key path and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class KeyError_(ValueError):
    """Raised inside validators with a location relative to the model being validated."""

    def __init__(self, loc: tuple[Any, ...], reason: str):
        super().__init__(reason)
        self.loc = loc
        self.reason = reason


def _unique(items, what: str, key, prefix: tuple[Any, ...] = ("nodes",)) -> None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        value = key(item)
        if value in seen:
            raise KeyError_(
                (*prefix, i, what), f"{value} duplicates {prefix[-1]}[{seen[value]}].{what}"
            )
        seen[value] = i


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


PATTERN_HELP = {
    _NAME_RE: "letters, digits, `_`, `.` and `-` only, starting with a letter or digit, at most 63 "
    "(nothing that could break out of a config line or a shell word)",
    _HOST_RE: "a host name label: letters, digits and `-`, at most 63, not starting or ending with `-`",
    _IFACE_RE: "an interface name: letters, digits, `_`, `.` and `-`, at most 15",
    _PATH_RE: "a URL path part: letters, digits and `. _ ~ / % + -` only",
    _SSH_KEY_RE: "one line `<type> <base64> [comment]` with type ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*",
    _URL_RE: "an http(s) URL of a .qcow2, .img or .raw image, without spaces or quotes",
    _SHA512_RE: "128 lowercase hex digits (a sha512)",
    _HTTPS_RE: "an https URL of a PVE API, like https://pve1.example.lan:8006/",
}


def _from_validation_error(exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, KeyError_):
        loc, reason = (*loc, *ctx_error.loc), ctx_error.reason
    elif err["type"] == "extra_forbidden":
        reason = "unknown key"
    elif err["type"] == "missing":
        reason = "required"
    elif err["type"] == "string_pattern_mismatch":
        allowed = PATTERN_HELP.get(err["ctx"]["pattern"], f"must match {err['ctx']['pattern']}")
        reason = f"{err['input']!r} has characters that are not allowed here: {allowed}"
    else:
        reason = err["msg"].removeprefix("Value error, ")
        if not isinstance(err.get("input"), (dict, list)):
            reason = f"{err['input']!r}: {reason}"
    return ConfigError(f"{PROJECT}:{key_path(loc)}", reason)


# --- Loading ---------------------------------------------------------------------------------

KNOWN_KEYS = ("platform", "sshPublicKey", "cluster", "vm", "haproxy", "proxmoxHosts")


def load_stack(config: Mapping[str, Any]) -> StackSpec:
    """Validate the `haproxy-ha:*` config of one stack (full keys, secrets excluded)."""
    values: dict[str, Any] = {}
    for full_key, value in sorted(config.items()):
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        if key in SECRET_KEYS:
            continue
        if key not in KNOWN_KEYS:
            raise ConfigError(full_key, f"unknown key (known: {', '.join(KNOWN_KEYS + SECRET_KEYS)})")
        values[key] = value
    for key in ("cluster", "haproxy"):
        if key not in values:
            raise ConfigError(f"{PROJECT}:{key}", "required")
    for key in ("cluster", "vm", "haproxy", "proxmoxHosts"):
        if key in values and not isinstance(values[key], dict):
            raise ConfigError(f"{PROJECT}:{key}", f"must be a mapping, got {type(values[key]).__name__}")
    try:
        return StackSpec.model_validate(values)
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


# --- Derived values --------------------------------------------------------------------------


# What every node installs, on the VMs (apk) and in the lab (apt) alike. rsyslog receives
# HAProxy's logs inside its chroot; logrotate rotates them; python3 runs haproxy-watch.
PACKAGES = ("haproxy", "keepalived", "rsyslog", "logrotate", "python3", "qemu-guest-agent")


@dataclass(frozen=True)
class Node:
    """One node with everything derived for it."""

    index: int
    name: str
    host: str
    address: ipaddress.IPv4Interface
    priority: int
    state: str
    peers: tuple[str, ...]


@dataclass(frozen=True)
class Cluster:
    """The validated stack plus every derived value the templates and components need."""

    stack: str
    spec: StackSpec
    secrets: Secrets

    @property
    def nodes(self) -> tuple[Node, ...]:
        c = self.spec.cluster
        prios = c.priorities()
        forced = next((i for i, n in enumerate(c.nodes) if n.state == "MASTER"), None)
        master = (forced if forced is not None else 0) if c.preempt else None
        out = []
        for i, spec in enumerate(c.nodes):
            state = spec.state or ("MASTER" if i == master else "BACKUP")
            peers = tuple(str(n.address.ip) for n in c.nodes if n is not spec) if c.unicast else ()
            out.append(Node(i, spec.name, spec.host, spec.address, prios[i], state, peers))
        return tuple(out)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def vrrp_version(self) -> int:
        return 2 if self.secrets.vrrp_password else 3

    @property
    def advert_int(self) -> float:
        configured = self.spec.cluster.advert_int
        if configured is not None:
            return configured
        return 1.0 if self.vrrp_version == 2 else 0.1

    @property
    def advert_int_text(self) -> str:
        return f"{self.advert_int:g}"

    @property
    def vip_holder(self) -> Node:
        """The node that holds the VIP when all are healthy (the highest priority)."""
        return max(self.nodes, key=lambda n: n.priority)

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

    def route_acls(self, frontend: FrontendSpec) -> list[dict[str, Any]]:
        """ACL names and criteria for a frontend's routes, in match order."""
        out = []
        for i, route in enumerate(frontend.routes):
            acls = []
            if route.path_beg:
                acls.append((f"r{i}_{route.backend}_beg", "path_beg", route.path_beg))
            if route.path_end:
                acls.append((f"r{i}_{route.backend}_end", "path_end", route.path_end))
            out.append({"backend": route.backend, "acls": acls, "condition": " || ".join(a[0] for a in acls)})
        return out


def build_cluster(stack: str, config: Mapping[str, Any], secrets: Secrets) -> Cluster:
    """Validate everything and return the derived cluster; raises ConfigError."""
    spec = load_stack(config)
    secrets.validate()
    if secrets.vrrp_password and spec.cluster.advert_int is not None and spec.cluster.advert_int % 1:
        raise ConfigError(
            f"{PROJECT}:cluster.advertInt",
            f"{spec.cluster.advert_int:g} s needs VRRPv3, which has no PASS authentication; "
            "use whole seconds or drop vrrpPassword",
        )
    return Cluster(stack, spec, secrets)


def content_hash(*texts: str) -> str:
    """A short stable hash of rendered file contents (for triggers and exports)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]
