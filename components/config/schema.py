"""The stack config's schema (pydantic, unknown keys rejected) and how it is loaded: every value
checked before anything is declared, each error naming its key path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from .alpine import IMAGE_SHA256, IMAGE_URL
from .clusterspec import ClusterSpec
from .errors import PROJECT, ConfigError, KeyError_, key_path
from .fields import (
    _CHECKSUM_RE,
    _HTTPS_RE,
    _URL_RE,
    PATTERN_HELP,
    HostName,
    Name,
    Spec,
    SshPublicKey,
)
from .haproxy import HaproxySpec

# --- VMs -------------------------------------------------------------------------------------

class VmSpec(Spec):
    """The Proxmox VMs (platform proxmox), one per node, each on its node's host."""

    cores: Annotated[int, Field(ge=1, le=64)] = 1
    memory_mi_b: Annotated[int, Field(ge=128, le=262144, alias="memoryMiB")] = 512
    disk_gi_b: Annotated[int, Field(ge=1, le=4096, alias="diskGiB")] = 4
    # The PVE bridge of the VMs' network interface: the L2 segment of the nodes and the VIPs.
    bridge: Name = "vmbr0"
    # Where the VMs' disks are made.
    datastore: Name = "local-lvm"
    # Where the downloaded image is kept on each PVE host (needs the `import` content type).
    image_datastore: Name = "local"
    # The cloud image every host downloads once (Alpine's generic BIOS image, with cloud-init).
    image_url: Annotated[str, StringConstraints(pattern=_URL_RE)] = IMAGE_URL
    # The image's sha256 or sha512 (by its length), checked by PVE; a custom imageUrl needs its own.
    image_checksum: Annotated[str, StringConstraints(pattern=_CHECKSUM_RE)] = IMAGE_SHA256
    # The first node's VM id; the others follow in list order. Absent: PVE picks free ids.
    vm_id_base: Annotated[int, Field(ge=100, le=999_999_000)] | None = None

    @model_validator(mode="after")
    def _image_pinned(self) -> VmSpec:
        if self.image_url != IMAGE_URL and self.image_checksum == IMAGE_SHA256:
            raise KeyError_(("imageChecksum",), "a custom imageUrl needs its own imageChecksum (sha256 or sha512)")
        return self

    @property
    def image_checksum_algorithm(self) -> str:
        return "sha256" if len(self.image_checksum) == 64 else "sha512"


class ProxmoxHostSpec(Spec):
    """A standalone PVE host's own API (its token is the secret proxmoxApiTokens.<host>)."""

    endpoint: Annotated[str, StringConstraints(pattern=_HTTPS_RE)]
    insecure: bool = False


# --- The whole stack -------------------------------------------------------------------------


class StackSpec(Spec):
    """The `haproxy-ha:*` keys of one stack (secrets excluded)."""

    # proxmox: VMs on Proxmox VE; lab: network namespaces on the machine running Pulumi.
    platform: Literal["proxmox", "lab"] = "proxmox"
    # The key root logs in with on the nodes (cloud-init installs it on the VMs): sshPrivateKey's public half.
    ssh_public_key: SshPublicKey | None = None
    # The nodes, their network and the VIPs.
    cluster: ClusterSpec
    # The VMs' size and image (platform proxmox).
    vm: VmSpec = VmSpec()
    # What HAProxy serves: frontends, backends, the stats page.
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
        value = err.get("input")
        # Quoted unless it is a structure or a long text (a PEM bundle): one short line.
        long_text = isinstance(value, str) and (len(value) > 80 or "\n" in value)
        if not isinstance(value, (dict, list)) and not long_text:
            reason = f"{value!r}: {reason}"
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
