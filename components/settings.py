"""Read and validate the stack's config inside a Pulumi program, before any resource exists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .config.errors import PROJECT, ConfigError
from .config.proxmox import PveAccess, parse_tokens, resolve
from .config.tls import parse_bundles
from .config.vridcheck import check_vrids, other_stacks
from .files.validate import check_raw_lines
from .model.model import Cluster, Secrets, build_cluster
from .pve import preflight
from .stackfile import PROJECT_DIR

OBJECT_KEYS = ("cluster", "vm", "haproxy", "proxmoxHosts")


@dataclass(frozen=True)
class Settings:
    cluster: Cluster
    ssh_private_key: pulumi.Output[str]  # secret
    pve: PveAccess | None  # platform proxmox: the endpoint and token of every host


def _all_config() -> dict[str, Any]:
    # The engine hands the program its config as one map of full keys to strings.
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def _decode(key: str, value: Any) -> Any:
    name = key.partition(":")[2]
    if name in OBJECT_KEYS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(key, f"must be a mapping ({exc.msg})") from None
    return value


def load_settings(stack: str) -> Settings:
    """Validate every key; raises ConfigError naming the key."""
    raw = _all_config()
    # Unknown haproxy-ha:* keys are rejected by the model, with the list of known ones.
    plain = {k: _decode(k, v) for k, v in raw.items() if k.partition(":")[0] == PROJECT}
    stats = raw.get(f"{PROJECT}:statsPassword")
    if not stats:
        raise ConfigError(f"{PROJECT}:statsPassword", "required; set it with `pulumi config set --secret`")
    vrrp = raw.get(f"{PROJECT}:vrrpPassword") or None
    ssh_key = raw.get(f"{PROJECT}:sshPrivateKey")
    if not ssh_key or "PRIVATE KEY-----" not in ssh_key:
        raise ConfigError(
            f"{PROJECT}:sshPrivateKey",
            "required: an unencrypted private key in PEM/OpenSSH form "
            "(`pulumi config set --secret haproxy-ha:sshPrivateKey < key`)",
        )
    bundles = parse_bundles(raw.get(f"{PROJECT}:tlsCertificates"))
    cluster = build_cluster(stack, plain, Secrets(stats, vrrp, tls_bundles=bundles))
    check_vrids(cluster.spec, other_stacks(PROJECT_DIR, stack))
    # A raw HAProxy line HAProxy rejects, named now (where HAProxy is installed), not on a node.
    doubt = check_raw_lines(cluster)
    if doubt:
        pulumi.log.warn(doubt)
    if cluster.spec.platform == "lab" and not cluster.spec.ssh_public_key:
        raise ConfigError(f"{PROJECT}:sshPublicKey", "required on platform lab (the nodes' authorized key)")
    pve = None
    if cluster.spec.platform == "proxmox":
        proxmox = {
            k.partition(":")[2]: v for k, v in raw.items() if k.startswith("proxmoxve:") and k != "proxmoxve:apiToken"
        }
        host_tokens = parse_tokens(raw.get(f"{PROJECT}:proxmoxApiTokens"))
        pve = resolve(cluster.spec, proxmox, raw.get("proxmoxve:apiToken"), host_tokens)
        # Every host there, online and ready, and every privilege held: before anything is declared.
        preflight.check(cluster, pve)
    return Settings(cluster=cluster, ssh_private_key=pulumi.Output.secret(ssh_key), pve=pve)
