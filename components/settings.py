"""Read and validate the stack's config inside a Pulumi program, before any resource exists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .model import PROJECT, Cluster, ConfigError, Secrets, build_cluster

OBJECT_KEYS = ("cluster", "vm", "haproxy")


@dataclass(frozen=True)
class Settings:
    cluster: Cluster
    ssh_private_key: pulumi.Output[str]  # secret
    proxmox: dict[str, Any]  # proxmoxve:* plain keys (endpoint, insecure, ...)
    proxmox_api_token: pulumi.Output[str] | None  # secret


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
    cluster = build_cluster(stack, plain, Secrets(stats, vrrp))
    if cluster.spec.platform == "lab" and not cluster.spec.ssh_public_key:
        raise ConfigError(f"{PROJECT}:sshPublicKey", "required on platform lab (the nodes' authorized key)")
    proxmox = {
        k.partition(":")[2]: v for k, v in raw.items() if k.startswith("proxmoxve:") and k != "proxmoxve:apiToken"
    }
    token = raw.get("proxmoxve:apiToken")
    if cluster.spec.platform == "proxmox":
        if not proxmox.get("endpoint"):
            raise ConfigError("proxmoxve:endpoint", "required on platform proxmox (https://pve.example.lan:8006/)")
        if not token:
            raise ConfigError("proxmoxve:apiToken", "required on platform proxmox; set it with --secret")
    return Settings(
        cluster=cluster,
        ssh_private_key=pulumi.Output.secret(ssh_key),
        proxmox=proxmox,
        proxmox_api_token=pulumi.Output.secret(token) if token else None,
    )
