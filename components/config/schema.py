"""The stack config's schema (pydantic, unknown keys rejected) and how it is loaded: every value
checked before anything is declared, each error naming its key path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from .clusterspec import ClusterSpec
from .errors import PROJECT, ConfigError, KeyError_, key_path, unique
from .fields import (
    _HTTPS_RE,
    _SHA512_RE,
    _SSH_KEY_RE,
    _URL_RE,
    PATTERN_HELP,
    Bind,
    Endpoint,
    HostName,
    Name,
    PathPart,
    Port,
    Spec,
)

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


class TlsSpec(Spec):
    """HTTPS on a frontend: certificates by name (SNI picks among them)."""

    certificates: Annotated[list[Name], Field(min_length=1)]
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    alpn: Annotated[list[Literal["h2", "http/1.1"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["h2", "http/1.1"]
    )
    # Strict-Transport-Security on every response, in seconds; absent: no header.
    hsts_max_age: Annotated[int, Field(ge=0, le=63_072_000)] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> TlsSpec:
        for field, values in (("certificates", self.certificates), ("alpn", self.alpn)):
            for i, value in enumerate(values):
                if value in values[:i]:
                    raise KeyError_((field, i), f"{value!r} is listed twice")
        return self


class FrontendSpec(Spec):
    name: Name
    bind: Bind
    mode: Literal["http", "tcp"] = "http"
    # Absent only on a frontend that redirects everything to HTTPS.
    default_backend: Name | None = None
    routes: list[RouteSpec] = Field(default_factory=list)
    tls: TlsSpec | None = None
    # 301 to https:// with the same host, path and query.
    redirect_to_https: bool = False

    @model_validator(mode="after")
    def _shape(self) -> FrontendSpec:
        if self.tls and self.mode != "http":
            raise KeyError_(("tls",), "TLS termination here needs mode: http")
        if self.redirect_to_https:
            if self.mode != "http":
                raise KeyError_(("redirectToHttps",), "a redirect is HTTP; it needs mode: http")
            if self.tls:
                raise KeyError_(("redirectToHttps",), "this frontend already serves HTTPS")
            if self.routes or self.default_backend:
                raise KeyError_(("redirectToHttps",), "a redirecting frontend sends every request to "
                                "HTTPS; drop its defaultBackend and routes")
        elif self.default_backend is None:
            raise KeyError_(("defaultBackend",), "required (unless redirectToHttps: true)")
        return self

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
        unique(self.servers, "name", lambda s: s.name, prefix=("servers",))
        if self.health_check and self.mode != "http":
            raise KeyError_(("healthCheck",), "an HTTP health check needs mode: http")
        return self


class HaproxySpec(Spec):
    stats: StatsSpec = StatsSpec()
    maxconn: Annotated[int, Field(ge=100, le=1_000_000)] = 4000
    # Raise by one to rotate the TLS session-ticket keys without a miss (components/config/tls.py).
    tls_ticket_key_generation: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    frontends: Annotated[list[FrontendSpec], Field(min_length=1)]
    backends: Annotated[list[BackendSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _references(self) -> HaproxySpec:
        unique(self.frontends, "name", lambda f: f.name, prefix=("frontends",))
        unique(self.backends, "name", lambda b: b.name, prefix=("backends",))
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
            if fe.redirect_to_https:
                if not any(f.tls and f.port == 443 for f in self.frontends):
                    raise KeyError_(("frontends", i, "redirectToHttps"),
                                    "redirects to https:// on port 443, but no frontend with tls binds port 443")
                continue
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


SECRET_KEYS = ("statsPassword", "vrrpPassword", "sshPrivateKey", "proxmoxApiTokens", "tlsCertificates")




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
