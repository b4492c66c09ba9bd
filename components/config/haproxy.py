"""The HAProxy part of the schema: frontends, routes, backends, TLS both ways, and where the raw
lines go (what a raw line may say is rawlines.py's). Errors name their key path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .errors import KeyError_, unique
from .fields import _PATH_RE, Bind, Duration, Endpoint, HostPattern, Name, Network, PathPart, Port, Spec
from .rawlines import ExtraSection, ProxyLine


def _listed_once(fields: dict[str, list]) -> None:
    """Each list's values appear once: the error names the repeat (`hosts[1]`)."""
    for field, values in fields.items():
        for i, value in enumerate(values):
            if value in values[:i]:
                raise KeyError_((field, i), f"{value!r} is listed twice")


# --- Timeouts --------------------------------------------------------------------------------

_BACKEND_TIMEOUTS = {"server", "connect", "tunnel"}
_FRONTEND_TIMEOUTS = {"client", "httpRequest"}


def _misplaced(values: Any, other: set[str], side: str, there: str) -> Any:
    if isinstance(values, dict):
        for key in values:
            if key in other:
                raise KeyError_((key,), f"a {side} timeout: set it under {there}")
    return values


class FrontendTimeouts(Spec):
    """What the frontend waits for from clients; absent: the defaults (client 30s, httpRequest 10s)."""

    client: Duration | None = None
    http_request: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _side(cls, values: Any) -> Any:
        return _misplaced(values, _BACKEND_TIMEOUTS, "backend", "backends[].timeouts")


class BackendTimeouts(Spec):
    """What the backend waits for from servers; absent: the defaults (server 30s, connect 5s).
    `tunnel` applies once a connection is a tunnel (WebSocket, CONNECT, tcp mode)."""

    server: Duration | None = None
    connect: Duration | None = None
    tunnel: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _side(cls, values: Any) -> Any:
        return _misplaced(values, _FRONTEND_TIMEOUTS, "frontend", "frontends[].timeouts")


# --- Frontends -------------------------------------------------------------------------------


class StatsSpec(Spec):
    """The stats page and /metrics on every node (its password: the secret statsPassword)."""

    port: Port = 8404
    user: Name = "admin"


class RouteSpec(Spec):
    """First match wins. http mode: hosts AND (pathBeg OR pathEnd), each part optional.
    tcp mode: the TLS ClientHello's server name (`sni`), for TLS passed through unopened."""

    # Where a matching request (or connection) goes.
    backend: Name
    # The Host header is one of these (`*.example.com`: any subdomain).
    hosts: list[HostPattern] = Field(default_factory=list)
    # The path starts with one of these.
    path_beg: list[PathPart] = Field(default_factory=list)
    # The path ends with one of these.
    path_end: list[PathPart] = Field(default_factory=list)
    # The server name of the client's TLS ClientHello is one of these.
    sni: list[HostPattern] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_condition(self) -> RouteSpec:
        if self.sni and (self.hosts or self.path_beg or self.path_end):
            raise KeyError_(("sni",), "routes by the TLS server name (tcp mode) cannot also match "
                            "hosts or paths (http mode)")
        if not (self.sni or self.hosts or self.path_beg or self.path_end):
            raise KeyError_((), "a route needs hosts, pathBeg or pathEnd (http mode), or sni (tcp mode)")
        _listed_once({"hosts": self.hosts, "sni": self.sni})
        return self


class TlsSpec(Spec):
    """HTTPS on a frontend: certificates by name (SNI picks among them), Mozilla's profile."""

    # Names in haproxy-ha:tlsCertificates; the client's server name (SNI) picks one, else the first.
    certificates: Annotated[list[Name], Field(min_length=1)]
    # Mozilla's server-side TLS profile: ciphers, TLS 1.3 suites and curves (components/model/proxies.py).
    profile: Literal["intermediate", "modern"] = "intermediate"
    # Absent: the profile's (TLSv1.2 for intermediate, TLSv1.3 for modern).
    min_version: Literal["TLSv1.2", "TLSv1.3"] | None = None
    # The protocols offered to clients, in order of preference.
    alpn: Annotated[list[Literal["h2", "http/1.1"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["h2", "http/1.1"]
    )
    # Strict-Transport-Security on every response, in seconds; absent: no header.
    hsts_max_age: Annotated[int, Field(ge=0, le=63_072_000)] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> TlsSpec:
        _listed_once({"certificates": self.certificates, "alpn": self.alpn})
        if self.profile == "modern" and self.min_version == "TLSv1.2":
            raise KeyError_(("minVersion",), "Mozilla's modern profile is TLS 1.3 only; use "
                            "profile: intermediate for TLS 1.2 clients")
        return self

    @property
    def effective_min_version(self) -> str:
        return self.min_version or ("TLSv1.3" if self.profile == "modern" else "TLSv1.2")


class FrontendSpec(Spec):
    """Where clients connect: on every node and the VIPs, one port each."""

    name: Name
    # `*:PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
    bind: Bind
    # http: requests are read (routes on hosts and paths, TLS ends here); tcp: connections pass.
    mode: Literal["http", "tcp"] = "http"
    # Absent only on a frontend that redirects everything to HTTPS.
    default_backend: Name | None = None
    # Tried in order, the first match wins; no match: defaultBackend.
    routes: list[RouteSpec] = Field(default_factory=list)
    # HTTPS: TLS ends here (mode http).
    tls: TlsSpec | None = None
    # 301 to https:// with the same host, path and query.
    redirect_to_https: bool = False
    # Clients (a load balancer in front) open every connection with a PROXY protocol header.
    accept_proxy: bool = False
    # X-Forwarded-For with the client's address (http mode), except for clients on 127.0.0.0/8.
    forward_for: bool = True
    timeouts: FrontendTimeouts = FrontendTimeouts()
    # Raw HAProxy lines added to the frontend as they are (not bind, mode or log).
    extra: list[ProxyLine] = Field(default_factory=list)
    # Who may connect: the node firewall opens the port to these networks only. Absent: everyone.
    sources: Annotated[list[Network], Field(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> FrontendSpec:
        if self.tls and self.mode != "http":
            raise KeyError_(("tls",), "TLS termination here needs mode: http (a tcp frontend passes "
                            "TLS through; route it with routes[].sni)")
        if self.mode == "tcp" and self.timeouts.http_request:
            raise KeyError_(("timeouts", "httpRequest"), "an HTTP timeout; this frontend is mode tcp")
        for i, route in enumerate(self.routes):
            if self.mode == "tcp" and not route.sni:
                raise KeyError_(("routes", i), "a tcp frontend routes on the TLS server name: give sni "
                                "(hosts and paths need mode: http)")
            if self.mode == "http" and route.sni:
                raise KeyError_(("routes", i, "sni"), "sni routes pass TLS through and need mode: tcp; "
                                "in http mode route on hosts")
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

    @property
    def inspects_sni(self) -> bool:
        return any(route.sni for route in self.routes)


# --- Backends --------------------------------------------------------------------------------

ProxyVersion = Literal["v1", "v2"]
# `ca: system`: the node's own trust store (HAProxy's @system-ca).
SYSTEM_CA = "system"
FROM_REQUEST = "from request"


class BackendTlsSpec(Spec):
    """HTTPS (or any TLS) to the servers."""

    verify: Literal["required", "none"] = "required"
    # A name in haproxy.caBundles or haproxy-ha:tlsCertificates (its chain), or `system`.
    ca: Name | None = None
    # The server name sent and verified: a host name, or `from request` (the request's Host).
    sni: HostPattern | Literal["from request"] | None = None

    @model_validator(mode="after")
    def _verified(self) -> BackendTlsSpec:
        if self.verify == "required" and self.ca is None:
            raise KeyError_(("ca",), "verify: required needs the CA that signed the servers' "
                            "certificates (a name in haproxy.caBundles, or `system`); or verify: none")
        if self.verify == "none" and self.ca is not None:
            raise KeyError_(("ca",), "verify: none checks no certificate; drop ca or use verify: required")
        if self.sni and self.sni.startswith("*."):
            raise KeyError_(("sni",), "a server name to send, not a wildcard")
        return self


class HealthCheckSpec(Spec):
    """An HTTP check (path set) or a connect check; `tls` runs it over TLS (`check-ssl`)."""

    # An HTTP check of this path; absent: a TCP connect check.
    path: PathPart | None = None
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    # The Host header the check sends.
    host: HostPattern | None = None
    # Absent: any 2xx or 3xx (HAProxy's default).
    expect_status: Annotated[int, Field(ge=100, le=599)] | None = None
    # Over TLS though the traffic passes through (e.g. k3s's API server). Verified as
    # backends[].tls says when set, else not verified (it proves the server answers).
    tls: bool = False
    interval: Duration = "2s"
    # Failed checks in a row that take a server out.
    fall: Annotated[int, Field(ge=1, le=100)] = 3
    # Passed checks in a row that bring it back.
    rise: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _http(self) -> HealthCheckSpec:
        if self.path is None:
            for key in ("host", "method", "expect_status"):
                if key in self.model_fields_set:
                    raise KeyError_((to_camel(key),), "belongs to an HTTP check: set path too")
        if self.host and self.host.startswith("*."):
            raise KeyError_(("host",), "a Host header to send, not a wildcard")
        return self


def _health(value: Any) -> Any:
    """`healthCheck: /path` is the short form of `healthCheck: {path: /path}`."""
    return {"path": value} if isinstance(value, str) else value


def _health_short_form(schema: dict[str, Any]) -> None:
    """The JSON Schema (components/config/jsonschema.py) accepts the short form too."""
    schema["properties"]["healthCheck"]["anyOf"].insert(0, {"type": "string", "pattern": _PATH_RE})


class ServerSpec(Spec):
    name: Name
    # `host:port`: an IPv4 address, `[IPv6]` or a DNS name.
    address: Endpoint
    # Its share of the load against the others' (0: none, checks only); absent: HAProxy's 1.
    weight: Annotated[int, Field(ge=0, le=256)] | None = None
    # Used only once every other server of the backend is down.
    backup: bool = False
    # The PROXY protocol header to this server; absent: the backend's sendProxy.
    send_proxy: ProxyVersion | None = None


class BackendSpec(Spec):
    """Servers that frontends send requests or connections to."""

    model_config = ConfigDict(json_schema_extra=_health_short_form)

    name: Name
    # The mode of the frontends that use it.
    mode: Literal["http", "tcp"] = "http"
    # How a server is picked (HAProxy's `balance`).
    balance: Literal["roundrobin", "leastconn", "source", "first", "static-rr"] = "roundrobin"
    # Absent: a TCP connect check every 2 s. `healthCheck: /path` is short for {path: /path}.
    health_check: HealthCheckSpec | None = None
    # Default for every server: send the client's address in a PROXY protocol header.
    send_proxy: ProxyVersion | None = None
    # TLS to the servers (re-encrypted traffic).
    tls: BackendTlsSpec | None = None
    timeouts: BackendTimeouts = BackendTimeouts()
    servers: Annotated[list[ServerSpec], Field(min_length=1)]
    # Raw HAProxy lines added to the backend as they are (not bind, mode or log).
    extra: list[ProxyLine] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, values: Any) -> Any:
        if isinstance(values, dict) and "healthCheck" in values:
            values = {**values, "healthCheck": _health(values["healthCheck"])}
        return values

    @model_validator(mode="after")
    def _servers(self) -> BackendSpec:
        unique(self.servers, "name", lambda s: s.name, prefix=("servers",))
        if self.tls and self.tls.sni == FROM_REQUEST and self.mode != "http":
            raise KeyError_(("tls", "sni"), "`from request` reads the Host header: it needs mode: http")
        if self.health_check and self.health_check.tls and self.tls:
            raise KeyError_(("healthCheck", "tls"), "checks already use TLS: backends[].tls applies to them")
        return self

    def proxy_version(self, server: ServerSpec) -> str | None:
        return server.send_proxy or self.send_proxy

    @property
    def speaks_tls(self) -> bool:
        """Its servers answer TLS: re-encrypted traffic, or checks over TLS."""
        return self.tls is not None or bool(self.health_check and self.health_check.tls)


# --- The whole HAProxy section ---------------------------------------------------------------


def _pem(value: str) -> str:
    if "PRIVATE KEY" in value:
        raise ValueError("holds a private key; a CA bundle is public certificates only")
    try:
        certs = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError("must hold PEM certificates (-----BEGIN CERTIFICATE----- ...)") from None
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class HaproxySpec(Spec):
    """What HAProxy serves on every node."""

    stats: StatsSpec = StatsSpec()
    # HAProxy's connection limit (global maxconn).
    maxconn: Annotated[int, Field(ge=100, le=1_000_000)] = 4000
    # Raise by one to rotate the TLS session-ticket keys without a miss (components/config/tls.py).
    tls_ticket_key_generation: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    frontends: Annotated[list[FrontendSpec], Field(min_length=1)]
    backends: Annotated[list[BackendSpec], Field(min_length=1)]
    # CA certificates (public, PEM) that backends[].tls.ca names.
    ca_bundles: dict[Name, Annotated[str, AfterValidator(_pem)]] = Field(default_factory=dict)
    # Whole sections passed through verbatim: userlists, caches, peers, resolvers...
    extra_sections: list[ExtraSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> HaproxySpec:
        unique(self.frontends, "name", lambda f: f.name, prefix=("frontends",))
        unique(self.backends, "name", lambda b: b.name, prefix=("backends",))
        if "stats" in {f.name for f in self.frontends}:
            i = [f.name for f in self.frontends].index("stats")
            raise KeyError_(("frontends", i, "name"), "`stats` is reserved for the stats page")
        headers: dict[tuple[str, str], int] = {("userlist", "stats_users"): -1}
        for i, section in enumerate(self.extra_sections):
            kind, name = section.split()[:2]
            if (kind, name) in headers:
                owner = "ours (the stats page's users)" if headers[(kind, name)] < 0 else \
                    f"already extraSections[{headers[(kind, name)]}]"
                raise KeyError_(("extraSections", i), f"{kind} {name} is {owner}")
            headers[(kind, name)] = i
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
            self._backend_ref(backends, ("frontends", i, "defaultBackend"), fe.default_backend, fe.mode)
            for j, route in enumerate(fe.routes):
                self._backend_ref(backends, ("frontends", i, "routes", j, "backend"), route.backend, fe.mode)
        # backends[].tls.ca is checked with the secrets (a name may be in haproxy-ha:tlsCertificates).
        return self

    @staticmethod
    def _backend_ref(backends: dict[str, BackendSpec], loc: tuple[Any, ...], name: str | None, mode: str) -> None:
        if name not in backends:
            raise KeyError_(loc, f"unknown backend {name!r} (known: {', '.join(sorted(backends))})")
        if backends[name].mode != mode:
            raise KeyError_(loc, f"backend {name!r} is mode {backends[name].mode}, the frontend is mode {mode}")
