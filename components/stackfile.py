"""Read a stack's config from `Pulumi.<stack>.yaml` without the Pulumi CLI (offline render, lab).

Encrypted values (`secure: ...`) cannot be decrypted here; they come from environment
variables, or become clearly marked placeholders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config.errors import PROJECT, ConfigError
from .config.tls import names_in_config
from .files.tlsissue import placeholder
from .model.model import Secrets

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_ENV = {
    "statsPassword": "HAPROXY_HA_STATS_PASSWORD",
    "vrrpPassword": "HAPROXY_HA_VRRP_PASSWORD",
}
PLACEHOLDER_STATS_PASSWORD = "PLACEHOLDER-statsPassword"
# Where an offline render finds `<name>.pem` bundles it cannot decrypt from the stack file.
TLS_DIR_ENV = "HAPROXY_HA_TLS_DIR"


@dataclass(frozen=True)
class StackFile:
    name: str
    config: dict[str, Any]  # full key -> value, secrets removed
    secrets: Secrets
    placeholders: tuple[str, ...]  # secret keys replaced by placeholders


def stack_path(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    """`Pulumi.<stack>.yaml`; a lab stack not yet brought up is read as shipped (lab/stacks/)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    shipped = project_dir / "lab" / "stacks" / path.name
    return path if path.exists() or not shipped.exists() else shipped


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
    bundles: dict[str, str] = {}
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
        if namespace == PROJECT and name == "tlsCertificates":
            if isinstance(value, dict):
                bundles.update({k: v for k, v in value.items() if isinstance(v, str)})
            continue
        plain[key] = value
    for name, env in SECRET_ENV.items():
        if name not in secret_values and environ.get(env):
            secret_values[name] = environ[env]
    if "statsPassword" not in secret_values:
        secret_values["statsPassword"] = PLACEHOLDER_STATS_PASSWORD
        placeholders.append("statsPassword")
    bundles, missing = _tls_bundles(plain, bundles, environ)
    placeholders += [f"tlsCertificates.{name}" for name in missing]
    secrets = Secrets(
        secret_values["statsPassword"], secret_values.get("vrrpPassword"), tuple(placeholders), bundles
    )
    return StackFile(stack, plain, secrets, tuple(placeholders))


def _tls_bundles(plain: dict[str, Any], bundles: dict[str, str],
                 environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Bundles for the certificates the frontends use: from the file, from `$HAPROXY_HA_TLS_DIR/
    <name>.pem`, else a throw-away self-signed stand-in (listed as a placeholder)."""
    names = names_in_config(plain)
    tls_dir = environ.get(TLS_DIR_ENV)
    missing = []
    for name in names:
        if name in bundles:
            continue
        if tls_dir and Path(tls_dir, f"{name}.pem").is_file():
            bundles[name] = Path(tls_dir, f"{name}.pem").read_text()
        else:
            bundles[name] = placeholder(str(name))
            missing.append(str(name))
    return bundles, missing


def list_stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    files = [*project_dir.glob("Pulumi.*.yaml"), *(project_dir / "lab" / "stacks").glob("Pulumi.*.yaml")]
    return sorted({p.name[len("Pulumi."):-len(".yaml")] for p in files})
