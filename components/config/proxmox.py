"""Which Proxmox VE API endpoint (and token) serves each host: pure, so tests need no Pulumi.

One PVE cluster answers for all its hosts on one endpoint (`proxmoxve:endpoint` +
`proxmoxve:apiToken`). Standalone hosts each have their own API and their own tokens
(`haproxy-ha:proxmoxHosts.<host>` + the secret `haproxy-ha:proxmoxApiTokens.<host>`). Both may
be mixed: hosts not listed in `proxmoxHosts` use the default endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PROJECT, ConfigError, secret_mapping
from .schema import StackSpec

DEFAULT = "default"

# The PVE privileges the program needs (the role in the README's `pveum` commands), read from
# PVE's own permission checks (pve-storage, qemu-server, pve-guest-common, PVE 8.4 and 9.x):
# download-url (Datastore.AllocateTemplate + Sys.AccessNetwork; Datastore.Allocate to delete
# the file), the VM's options by class (VM.Config.*), serial0 (HWType), the disk and its
# import-from and resize (Datastore.AllocateSpace/Audit, VM.Config.Disk), the bridge (SDN.Use
# on /sdn/zones/localnetwork/<bridge>), start/stop (VM.PowerMgmt), reads (VM.Audit). The bpg
# docs' example role grants far more. No guest-agent privilege: the program never asks the
# agent (VM.Monitor on 8.4 is VM.GuestAgent.Audit on 9.x; each version rejects the other).
REQUIRED_PRIVILEGES = (
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
)


@dataclass(frozen=True)
class PveEndpoint:
    """One Proxmox API (a cluster or a standalone host) and the hosts it serves."""

    key: str  # DEFAULT, or the first host (sorted) that uses this endpoint
    endpoint: str
    insecure: bool
    token_key: str  # the config key holding its token (never the token itself)
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class PveAccess:
    """Every endpoint the stack needs, with their tokens (secret: never printed)."""

    endpoints: tuple[PveEndpoint, ...]
    tokens: Mapping[str, str]  # token_key -> token

    def __repr__(self) -> str:
        return f"PveAccess({[e.key for e in self.endpoints]}, tokens=<redacted>)"

    def for_host(self, host: str) -> PveEndpoint:
        return next(e for e in self.endpoints if host in e.hosts)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def parse_tokens(raw: Any) -> dict[str, str]:
    """`haproxy-ha:proxmoxApiTokens`: a mapping host -> token."""
    key = f"{PROJECT}:proxmoxApiTokens"
    raw = secret_mapping(raw, key, "host -> API token", "'USER@REALM!TOKENID=SECRET'")
    out = {}
    for host, token in raw.items():
        if not isinstance(token, str) or not _token_shape(token):
            # The reason never quotes the value: it is a secret.
            raise ConfigError(f"{key}.{host}", "is not an API token of the form USER@REALM!TOKENID=SECRET")
        out[str(host)] = token
    return out


def _token_shape(token: str) -> bool:
    user, bang, rest = token.partition("!")
    return bool(bang and "@" in user and "=" in rest and not any(c.isspace() for c in token))


def resolve(spec: StackSpec, proxmox: Mapping[str, Any], default_token: str | None,
            host_tokens: Mapping[str, str]) -> PveAccess:
    """Map every node's host to one endpoint; raise ConfigError naming the key on a bad mix.

    `proxmox` holds the plain `proxmoxve:*` keys (endpoint, insecure); `default_token` is
    `proxmoxve:apiToken`; `host_tokens` is `haproxy-ha:proxmoxApiTokens`.
    """
    own = spec.proxmox_hosts
    if not own and not proxmox.get("endpoint"):
        raise ConfigError("proxmoxve:endpoint", "required on platform proxmox (https://pve.example.lan:8006/), "
                          f"or one endpoint per standalone host in {PROJECT}:proxmoxHosts")
    for host in sorted(host_tokens):
        if host not in own:
            raise ConfigError(
                f"{PROJECT}:proxmoxApiTokens.{host}",
                f"no host {host!r} in {PROJECT}:proxmoxHosts"
                + (f" (known: {', '.join(sorted(own))})" if own else ""),
            )
    grouped: dict[tuple[str, bool, str], list[str]] = {}
    default_hosts: list[str] = []
    for i, node in enumerate(spec.cluster.nodes):
        if node.host in own:
            host = own[node.host]
            token_key = f"{PROJECT}:proxmoxApiTokens.{node.host}"
            if node.host not in host_tokens:
                raise ConfigError(token_key, f"required: host {node.host} has its own endpoint in "
                                  f"{PROJECT}:proxmoxHosts; set it with `pulumi config set --secret "
                                  f"--path '{token_key}' 'USER@REALM!TOKENID=SECRET'`")
            group = grouped.setdefault((host.endpoint, host.insecure, host_tokens[node.host]), [])
            if node.host not in group:
                group.append(node.host)
            continue
        if not proxmox.get("endpoint"):
            raise ConfigError(
                f"{PROJECT}:cluster.nodes[{i}].host",
                f"host {node.host!r} has no Proxmox endpoint: add it to {PROJECT}:proxmoxHosts "
                "or set proxmoxve:endpoint (one PVE cluster for every host)",
            )
        if node.host not in default_hosts:
            default_hosts.append(node.host)
    endpoints: list[PveEndpoint] = []
    tokens: dict[str, str] = {}
    if default_hosts:
        if not default_token:
            raise ConfigError("proxmoxve:apiToken", "required on platform proxmox; set it with --secret")
        if not _token_shape(default_token):
            raise ConfigError("proxmoxve:apiToken", "is not an API token of the form USER@REALM!TOKENID=SECRET")
        endpoints.append(PveEndpoint(DEFAULT, str(proxmox["endpoint"]), _truthy(proxmox.get("insecure", False)),
                                     "proxmoxve:apiToken", tuple(sorted(default_hosts))))
        tokens["proxmoxve:apiToken"] = default_token
    seen: dict[str, str] = {}
    for (endpoint, insecure, token), hosts in sorted(grouped.items(), key=lambda kv: sorted(kv[1])):
        hosts = sorted(hosts)
        if endpoint in seen:  # one API, two tokens or TLS settings: which one would we use?
            raise ConfigError(
                f"{PROJECT}:proxmoxHosts.{hosts[0]}",
                f"shares endpoint {endpoint} with host {seen[endpoint]} but not its token and insecure setting",
            )
        seen[endpoint] = hosts[0]
        token_key = f"{PROJECT}:proxmoxApiTokens.{hosts[0]}"
        endpoints.append(PveEndpoint(hosts[0], endpoint, insecure, token_key, tuple(hosts)))
        tokens[token_key] = token
    return PveAccess(tuple(endpoints), tokens)
