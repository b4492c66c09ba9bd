"""Read a stack's config from `Pulumi.<stack>.yaml` without the Pulumi CLI (offline render, lab).

Encrypted values (`secure: ...`) cannot be decrypted here; they come from environment
variables, or become clearly marked placeholders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .model import PROJECT, ConfigError, Secrets

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_ENV = {
    "statsPassword": "HAPROXY_HA_STATS_PASSWORD",
    "vrrpPassword": "HAPROXY_HA_VRRP_PASSWORD",
}
PLACEHOLDER_STATS_PASSWORD = "PLACEHOLDER-statsPassword"


@dataclass(frozen=True)
class StackFile:
    name: str
    config: dict[str, Any]  # full key -> value, secrets removed
    secrets: Secrets
    placeholders: tuple[str, ...]  # secret keys replaced by placeholders


def stack_path(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def read_stack(stack: str, project_dir: Path = PROJECT_DIR, environ: dict[str, str] | None = None) -> StackFile:
    environ = os.environ if environ is None else environ
    path = stack_path(stack, project_dir)
    if not path.is_file():
        raise ConfigError(str(path), f"no such stack file (stacks here: {', '.join(list_stacks(project_dir))})")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: config", "must be a mapping")

    plain: dict[str, Any] = {}
    secret_values: dict[str, str] = {}
    placeholders: list[str] = []
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and name in SECRET_ENV:
            if isinstance(value, dict) and "secure" in value:
                value = environ.get(SECRET_ENV[name])
            if value is not None:
                secret_values[name] = str(value)
            continue
        if namespace == PROJECT and name == "sshPrivateKey":
            continue
        plain[key] = value
    for name, env in SECRET_ENV.items():
        if name not in secret_values and environ.get(env):
            secret_values[name] = environ[env]
    if "statsPassword" not in secret_values:
        secret_values["statsPassword"] = PLACEHOLDER_STATS_PASSWORD
        placeholders.append("statsPassword")
    secrets = Secrets(
        secret_values["statsPassword"], secret_values.get("vrrpPassword"), tuple(placeholders)
    )
    return StackFile(stack, plain, secrets, tuple(placeholders))


def list_stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
