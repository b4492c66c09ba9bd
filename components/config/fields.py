"""Plain value types of the config schema and the base of every config object."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Names end up in config lines and shell words: letters, digits and `_ . -` only, nothing that
# could close a quote, start a comment or a command (spaces, quotes, newlines, `;`, `$`, `#`).
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_HOST_RE = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
_IFACE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
_PATH_RE = r"^[A-Za-z0-9._~/%+-]{1,200}$"
_SSH_KEY_RE = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n\r]*)?$"
_URL_RE = r"^https?://[A-Za-z0-9._~:/%+-]+\.(qcow2|img|raw)$"
_CHECKSUM_RE = r"^([0-9a-f]{64}|[0-9a-f]{128})$"
_HTTPS_RE = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$"
# A host name or a `*.` wildcard as routes match them (Host header, TLS SNI).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PATTERN_RE = rf"^(\*\.)?({_LABEL}\.)*{_LABEL}$"
# HAProxy's time format, with its unit always written: 500ms, 30s, 5m, 1h, 1d.
_DURATION_RE = r"^[0-9]{1,7}(ms|s|m|h|d)$"

Name = Annotated[str, StringConstraints(pattern=_NAME_RE)]
# Node names are also host names (RFC 1123 label) and VM names.
HostName = Annotated[str, StringConstraints(pattern=_HOST_RE)]
InterfaceName = Annotated[str, StringConstraints(pattern=_IFACE_RE)]
# A path prefix or suffix as HAProxy matches it: no spaces, quotes or control characters.
PathPart = Annotated[str, StringConstraints(pattern=_PATH_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]
HostPattern = Annotated[str, StringConstraints(pattern=_HOST_PATTERN_RE, max_length=253, to_lower=True)]
Duration = Annotated[str, StringConstraints(pattern=_DURATION_RE)]
# One OpenSSH public key line (an authorized key, or a host key as ssh-keyscan prints it).
SshPublicKey = Annotated[str, StringConstraints(pattern=_SSH_KEY_RE, max_length=16384)]


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


def _network(value: str) -> str:
    """An IPv4 or IPv6 network as a firewall rule takes it (one host: its /32 or /128)."""
    try:
        return str(ipaddress.ip_network(value))
    except ValueError as exc:
        if "host bits set" in str(exc):
            net = ipaddress.ip_network(value, strict=False)
            raise ValueError(f"host bits set: the network is {net}; one host is "
                             f"{value.split('/')[0]}/{net.max_prefixlen}") from None
        raise ValueError("not an IPv4 or IPv6 network (like 192.0.2.0/24 or 2001:db8::/48)") from None


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
# A network as a firewall rule takes it: `192.0.2.0/24`, `2001:db8::/48`; one host alone: its
# address (`192.0.2.7`, the same as /32).
Network = Annotated[str, AfterValidator(_network)]


class Spec(BaseModel):
    """Base of every config object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


PATTERN_HELP = {
    _NAME_RE: "letters, digits, `_`, `.` and `-` only, starting with a letter or digit, at most 63 "
    "(nothing that could break out of a config line or a shell word)",
    _HOST_RE: "a host name label: letters, digits and `-`, at most 63, not starting or ending with `-`",
    _IFACE_RE: "an interface name: letters, digits, `_`, `.` and `-`, at most 15",
    _PATH_RE: "a URL path part: letters, digits and `. _ ~ / % + -` only",
    _SSH_KEY_RE: "one line `<type> <base64> [comment]` with type ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*",
    _URL_RE: "an http(s) URL of a .qcow2, .img or .raw image, without spaces or quotes",
    _CHECKSUM_RE: "64 or 128 lowercase hex digits (a sha256 or a sha512)",
    _HTTPS_RE: "an https URL of a PVE API, like https://pve1.example.lan:8006/",
    _HOST_PATTERN_RE: "a host name (www.example.com) or a wildcard for its subdomains (*.example.com)",
    _DURATION_RE: "a duration with its unit, as HAProxy writes it: 500ms, 30s, 5m, 1h or 1d",
}
